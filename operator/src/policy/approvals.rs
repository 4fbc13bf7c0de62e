//! Counting approvals under the policy: required approvals (default 1, per-namespace
//! override by annotation), never the requester, each approver once, only approvers whose
//! authority to `approve` is confirmed, and a single valid Deny ends the request.

use sb_core::crd::{Approval, Decision};

/// Namespace annotation overriding how many approvals a request needs (1 to 5).
pub const REQUIRED_APPROVALS_ANNOTATION: &str = "secrets-bridge.io/required-approvals";
/// Approvals a request needs when its namespace does not say otherwise.
pub const DEFAULT_REQUIRED_APPROVALS: u32 = 1;
/// The most approvals a namespace may require.
pub const MAX_REQUIRED_APPROVALS: u32 = 5;

/// The namespace's required approvals from its annotations.
pub fn required_approvals<'a>(mut annotations: impl Iterator<Item = (&'a String, &'a String)>) -> Result<u32, String> {
    match annotations.find(|(k, _)| k.as_str() == REQUIRED_APPROVALS_ANNOTATION) {
        None => Ok(DEFAULT_REQUIRED_APPROVALS),
        Some((_, v)) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_REQUIRED_APPROVALS).contains(&n) => Ok(n),
            _ => Err(format!(
                "namespace annotation {REQUIRED_APPROVALS_ANNOTATION}={v:?} is not a number from 1 to {MAX_REQUIRED_APPROVALS}"
            )),
        },
    }
}

/// Why an entry in `status.approvals` did not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The requester approved their own request.
    SelfApproval,
    /// The approver does not hold the `approve` verb on the object.
    NotAuthorized,
    /// The approver had already decided.
    Duplicate,
}

/// Where the approvals of a request stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Enough valid approvals.
    Approved { approvers: Vec<String> },
    /// A valid Deny.
    Denied { by: String, reason: String },
    /// Still waiting.
    Waiting { have: u32, need: u32 },
}

/// The count of one request's approvals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub verdict: Verdict,
    pub required: u32,
    pub counted: u32,
    /// Entries that did not count, with the approver and why.
    pub ignored: Vec<(String, Ignored)>,
}

impl Tally {
    /// `counted/required`, shown in the Approvals printer column.
    pub fn summary(&self) -> String {
        format!("{}/{}", self.counted.min(self.required), self.required)
    }
}

/// Counts `approvals` in order. `authorized(approver)` answers whether the approver holds
/// the `approve` verb on the object (a SubjectAccessReview in the controller).
pub fn tally(requester: &str, approvals: &[Approval], required: u32, authorized: &dyn Fn(&str) -> bool) -> Tally {
    let mut seen: Vec<&str> = Vec::new();
    let mut approvers = Vec::new();
    let mut ignored = Vec::new();
    let mut denied = None;
    for entry in approvals {
        let who = entry.approver.as_str();
        if who == requester {
            ignored.push((who.to_string(), Ignored::SelfApproval));
            continue;
        }
        if seen.contains(&who) {
            ignored.push((who.to_string(), Ignored::Duplicate));
            continue;
        }
        seen.push(who);
        if !authorized(who) {
            ignored.push((who.to_string(), Ignored::NotAuthorized));
            continue;
        }
        match entry.decision {
            Decision::Deny => {
                denied.get_or_insert((who.to_string(), entry.reason.clone()));
            }
            Decision::Approve => approvers.push(who.to_string()),
        }
    }
    let counted = approvers.len() as u32;
    let verdict = match denied {
        Some((by, reason)) => Verdict::Denied { by, reason },
        None if counted >= required => Verdict::Approved { approvers },
        None => Verdict::Waiting { have: counted, need: required },
    };
    Tally { verdict, required, counted, ignored }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn entry(who: &str, decision: Decision) -> Approval {
        Approval {
            decision,
            approver: who.into(),
            groups: vec![],
            reason: format!("{who} says so"),
            time: Time(Default::default()),
        }
    }
    fn everyone(_: &str) -> bool {
        true
    }

    #[test]
    fn one_approval_from_another_user_approves_by_default() {
        let t = tally("alice", &[entry("bob", Decision::Approve)], 1, &everyone);
        assert_eq!(t.verdict, Verdict::Approved { approvers: vec!["bob".into()] });
        assert_eq!(t.summary(), "1/1");
    }

    #[test]
    fn the_requester_never_counts() {
        let t = tally("alice", &[entry("alice", Decision::Approve)], 1, &everyone);
        assert_eq!(t.verdict, Verdict::Waiting { have: 0, need: 1 });
        assert_eq!(t.ignored, vec![("alice".into(), Ignored::SelfApproval)]);
    }

    #[test]
    fn an_unauthorized_approver_does_not_count() {
        let t = tally("alice", &[entry("mallory", Decision::Approve)], 1, &|u| u == "bob");
        assert_eq!(t.verdict, Verdict::Waiting { have: 0, need: 1 });
        assert_eq!(t.ignored, vec![("mallory".into(), Ignored::NotAuthorized)]);
    }

    #[test]
    fn an_unauthorized_deny_does_not_end_the_request() {
        let t =
            tally("alice", &[entry("mallory", Decision::Deny), entry("bob", Decision::Approve)], 1, &|u| u == "bob");
        assert!(matches!(t.verdict, Verdict::Approved { .. }));
    }

    #[test]
    fn one_deny_ends_the_request_even_after_approvals() {
        let t = tally("alice", &[entry("bob", Decision::Approve), entry("carol", Decision::Deny)], 1, &everyone);
        assert_eq!(t.verdict, Verdict::Denied { by: "carol".into(), reason: "carol says so".into() });
    }

    #[test]
    fn two_required_needs_two_distinct_approvers() {
        let approvals = [entry("bob", Decision::Approve), entry("bob", Decision::Approve)];
        let t = tally("alice", &approvals, 2, &everyone);
        assert_eq!(t.verdict, Verdict::Waiting { have: 1, need: 2 });
        assert_eq!(t.summary(), "1/2");
        let approvals = [entry("bob", Decision::Approve), entry("carol", Decision::Approve)];
        assert!(matches!(tally("alice", &approvals, 2, &everyone).verdict, Verdict::Approved { .. }));
    }

    #[test]
    fn namespace_annotation_overrides_the_default() {
        let none: Vec<(String, String)> = vec![];
        assert_eq!(required_approvals(none.iter().map(|(k, v)| (k, v))), Ok(1));
        let two = [(REQUIRED_APPROVALS_ANNOTATION.to_string(), "2".to_string())];
        assert_eq!(required_approvals(two.iter().map(|(k, v)| (k, v))), Ok(2));
        for bad in ["0", "6", "two", ""] {
            let a = [(REQUIRED_APPROVALS_ANNOTATION.to_string(), bad.to_string())];
            assert!(required_approvals(a.iter().map(|(k, v)| (k, v))).is_err(), "{bad}");
        }
    }
}
