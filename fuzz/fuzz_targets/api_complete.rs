//! `POST /v1/agent/jobs/{id}/complete` bodies (a job's outcome: sealed deliveries, a patch
//! version, a discovery summary, a failure), through the agent API's own body check
//! (`sb_operator::api::parse_strict`), then the handler's failure-reason rule.
//!
//! Properties (`sb_fuzz::check_api_body`): an accepted body is what serde reads and
//! round-trips; a refused one gets a 400/422 whose message is a fixed sentence that quotes
//! nothing of the body. A failure reason the handler accepts is a Kubernetes condition reason
//! (what the operator then writes into the request's condition and Event); every delivery
//! envelope survives the compact form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::protocol::{CompleteRequest, JobOutcome, JobResult};
use sb_core::seal::Envelope;
use sb_operator::api::is_condition_reason;

fuzz_target!(|data: &[u8]| {
    let Some(request) = sb_fuzz::check_api_body::<CompleteRequest>(data) else { return };
    match &request.outcome {
        JobOutcome::Failed(failure) => {
            if is_condition_reason(&failure.reason) {
                let reason = failure.reason.as_bytes();
                assert!(reason.len() <= 128 && reason[0].is_ascii_alphabetic());
                assert!(reason.iter().all(|b| b.is_ascii_alphanumeric() || b"_,:".contains(b)));
            }
        }
        JobOutcome::Succeeded(JobResult::Read { deliveries, .. }) => {
            for envelope in deliveries.values() {
                assert_eq!(Envelope::from_compact(&envelope.to_compact()).as_ref(), Ok(envelope));
                let _ = envelope.validate();
            }
        }
        JobOutcome::Succeeded(_) => {}
    }
});
