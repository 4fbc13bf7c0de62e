//! Pure decisions the request controllers make: who has approved, whether a target is
//! allowed, what phase comes next. No client, no store: everything here is unit-tested
//! with plain values (pure `validate → decide` steps, testable without a client).

pub mod admission;
pub mod approvals;
pub mod target;
