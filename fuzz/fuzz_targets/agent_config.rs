//! The agent's provider configuration file (`sb_agent::config::AgentConfig::parse`, YAML):
//! which providers it serves, how it reaches them and the prefixes each may touch.
//!
//! Properties: an accepted file has at least one provider, unique non-empty names, at least
//! one allowed prefix each and a discovery page size of 1..=1000 (what `parse` documents and
//! what the agent then relies on); parsing the same text twice gives the same result (no
//! state, no environment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_agent::config::AgentConfig;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = AgentConfig::parse(text);
    let again = AgentConfig::parse(text);
    assert_eq!(format!("{parsed:?}"), format!("{again:?}"));
    let Ok(config) = parsed else { return };
    assert!(!config.providers.is_empty());
    let names: BTreeSet<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), config.providers.len(), "repeated provider names");
    assert!(!names.contains(""));
    assert!(config.providers.iter().all(|p| !p.allowed_prefixes.is_empty()));
    assert!((1..=1000).contains(&config.discovery_page_size));
});
