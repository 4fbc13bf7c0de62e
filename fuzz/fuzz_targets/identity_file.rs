//! The agent's `identity.json` (`sb_agent::identity::Identity::from_json`, what `from_file`
//! runs on the file's text), the file `sb-agent identity new` writes and people copy into a
//! Secret.
//!
//! Properties:
//! - a refusal names a category and a position or a field, never text of the file (the seed
//!   is the agent's one secret);
//! - an accepted file has a non-empty agent id and a seed in its canonical form, and the
//!   identity's `Debug` output does not show the seed;
//! - the signature header the agent makes with its id parses, on the operator's side, to
//!   the same id (otherwise every request is refused as signed for another agent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_agent::identity::Identity;
use sb_core::identity::RequestSignature;
use sb_core::protocol::AgentIdentity;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/etc/sb-agent/identity.json");
    let file = serde_json::from_str::<AgentIdentity>(text).ok();
    match Identity::from_json(path, text) {
        Err(err) => {
            let message = err.to_string();
            if let Some(file) = &file {
                if file.agent_key.len() >= 16 {
                    assert!(!message.contains(&file.agent_key), "a refusal quotes the seed: {message}");
                }
            }
        }
        Ok(identity) => {
            let file = file.expect("an accepted identity file is an AgentIdentity");
            assert!(!identity.agent_id.is_empty());
            assert_eq!(identity.keys.seed_base64().as_str(), file.agent_key.trim());
            let shown = format!("{identity:?}");
            let elsewhere = [&file.agent_id, &file.operator_endpoint].iter().any(|f| f.contains(file.agent_key.trim()));
            assert!(elsewhere || !shown.contains(file.agent_key.trim()), "Debug shows the seed: {shown}");
            let signed =
                RequestSignature::sign(&identity.keys, &identity.agent_id, "POST", "/v1/agent/heartbeat", 1, b"{}");
            let parsed = RequestSignature::parse(&signed.to_header());
            assert_eq!(
                parsed.map(|p| p.agent_id),
                Some(identity.agent_id.clone()),
                "the operator reads another agent id from this agent's header"
            );
        }
    }
});
