//! Identity: `sb-agent identity new` creates the key material in the agent's boundary and
//! prints only its public half; env credentials (`SB_AGENT_ID` + `SB_AGENT_KEY`) win over the
//! file; a missing, half-set or malformed identity stops the binary with a message naming the
//! variable or file and never the key; the keys are the same after a restart.

mod common;

use clap::Parser;
use sb_agent::cli::Cli;
use sb_agent::identity::{Identity, IdentityError};
use sb_core::identity::AgentKeys;
use sb_core::protocol::AgentIdentity;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = "providers:\n  - name: vault\n    type: Vault\n    address: http://127.0.0.1:18200\n    auth: { method: token, tokenEnv: SB_TEST_UNUSED }\n    allowedPrefixes: [\"\"]\n";

fn identity_json(id: &str, agent_key: &str) -> String {
    serde_json::json!({
        "agentId": id,
        "agentKey": agent_key,
        "operatorEndpoint": "https://operator.example:8443",
        "caBundle": "",
        "spkiSha256": "",
    })
    .to_string()
}

/// Runs the binary with a clean agent environment plus `env`.
fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sb-agent"));
    for var in [
        "SB_AGENT_ID",
        "SB_AGENT_KEY",
        "SB_IDENTITY_FILE",
        "SB_OPERATOR_URL",
        "SB_CA_FILE",
        "SB_SPKI_PIN",
        "SB_AGENT_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env.iter().copied()).output().expect("run sb-agent")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(["sb-agent", "--config", "unused.yaml"].iter().chain(args)).unwrap()
}

/// Asserts that neither output stream carries the seed (`agentKey`) in any usual encoding.
fn assert_no_key_material(out: &Output, agent_key: &str) {
    let seed: [u8; 32] = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, agent_key)
        .expect("agentKey is base64url")
        .try_into()
        .expect("agentKey is 32 bytes");
    let forms = common::fake_operator::key_material_forms(&seed);
    assert!(forms.iter().any(|form| form == agent_key), "the search covers the identity.json form");
    let (text_out, text_err) = (stdout(out), stderr(out));
    for form in forms {
        assert!(!text_out.contains(&form), "the key is on stdout ({form}):\n{text_out}");
        assert!(!text_err.contains(&form), "the key is on stderr ({form}):\n{text_err}");
    }
}

// ---- loading ---------------------------------------------------------------------------

#[test]
fn env_credentials_win_over_the_identity_file() {
    let (file_keys, env_keys) = (AgentKeys::generate(), AgentKeys::generate());
    let file_seed = file_keys.seed_base64();
    let file = common::temp_file(&identity_json("from-file", &file_seed));
    let path = file.path().to_str().unwrap();
    let cli = cli(&["--identity-file", path, "--operator-url", "https://op.example:8443"]);
    let env_seed = env_keys.seed_base64();
    let env = |name: &str| match name {
        "SB_AGENT_ID" => Some("from-env".to_owned()),
        "SB_AGENT_KEY" => Some(env_seed.to_string()),
        _ => None,
    };
    let identity = Identity::resolve(&cli, env).unwrap();
    assert_eq!(identity.agent_id, "from-env");
    assert_eq!(identity.source, "environment");
    assert_eq!(identity.operator_url, "https://op.example:8443");
    assert_eq!(identity.keys.auth_public(), env_keys.auth_public());
    assert_eq!(identity.sealing_keypair().public, env_keys.sealing().public);

    let from_file = Identity::resolve(&cli, |_| None).unwrap();
    assert_eq!(from_file.agent_id, "from-file");
    assert_eq!(from_file.source, "identity file");
    assert_eq!(from_file.keys.auth_public(), file_keys.auth_public());
    assert_eq!(from_file.sealing_keypair().public, file_keys.sealing().public);
    assert_ne!(from_file.keys.auth_public(), identity.keys.auth_public());
    let shown = format!("{from_file:?}");
    assert!(!shown.contains(file_seed.as_str()), "Debug shows the seed: {shown}");
    assert!(shown.contains(&file_keys.auth_public().fingerprint()), "Debug shows the fingerprint: {shown}");
}

#[test]
fn flags_override_the_operator_coordinates_of_the_identity_file() {
    let keys = AgentKeys::generate();
    let file = common::temp_file(
        &serde_json::json!({
            "agentId": "edge",
            "agentKey": keys.seed_base64().as_str(),
            "operatorEndpoint": "https://in-file.example:8443",
            "caBundle": "FILE CA",
            "spkiSha256": "file-pin",
        })
        .to_string(),
    );
    let path = file.path().to_str().unwrap();
    let from_file = Identity::resolve(&cli(&["--identity-file", path]), |_| None).unwrap();
    assert_eq!(from_file.operator_url, "https://in-file.example:8443");
    assert_eq!(from_file.ca_pem.as_deref(), Some("FILE CA"));
    assert_eq!(from_file.spki_pin.as_deref(), Some("file-pin"));

    let ca = common::temp_file("FLAG CA");
    let flags = cli(&[
        "--identity-file",
        path,
        "--operator-url",
        "https://flag.example:8443",
        "--ca-file",
        ca.path().to_str().unwrap(),
        "--spki-pin",
        "flag-pin",
    ]);
    let overridden = Identity::resolve(&flags, |_| None).unwrap();
    assert_eq!(overridden.operator_url, "https://flag.example:8443");
    assert_eq!(overridden.ca_pem.as_deref(), Some("FLAG CA"));
    assert_eq!(overridden.spki_pin.as_deref(), Some("flag-pin"));
    assert_eq!(overridden.keys.auth_public(), keys.auth_public());
}

#[test]
fn a_missing_or_half_set_identity_exits_non_zero_naming_the_variables() {
    let config = common::temp_file(CONFIG);
    let config = config.path().to_str().unwrap();
    let out = agent(&["--config", config], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("SB_IDENTITY_FILE") && err.contains("SB_AGENT_ID") && err.contains("SB_AGENT_KEY"), "{err}");
    assert!(err.contains("sb-agent identity new"), "points at how to create one: {err}");

    let out = agent(&["--config", config], &[("SB_AGENT_ID", "edge")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SB_AGENT_ID is set but SB_AGENT_KEY is not"), "{}", stderr(&out));

    let seed = AgentKeys::generate().seed_base64();
    let out = agent(&["--config", config], &[("SB_AGENT_KEY", seed.as_str())]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SB_AGENT_KEY is set but SB_AGENT_ID is not"), "{}", stderr(&out));
    assert_no_key_material(&out, &seed);

    let out = agent(&["--config", config], &[("SB_IDENTITY_FILE", "/nonexistent/identity.json")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/identity.json"), "{}", stderr(&out));
}

#[test]
fn half_set_env_does_not_fall_back_to_the_identity_file() {
    let file = common::temp_file(&identity_json("edge", &AgentKeys::generate().seed_base64()));
    let cli = cli(&["--identity-file", file.path().to_str().unwrap()]);
    let only_id = |name: &str| (name == "SB_AGENT_ID").then(|| "edge".to_owned());
    let err = Identity::resolve(&cli, only_id).unwrap_err();
    assert!(matches!(err, IdentityError::HalfEnv { set: "SB_AGENT_ID", missing: "SB_AGENT_KEY" }), "{err}");
    let only_key = |name: &str| (name == "SB_AGENT_KEY").then(|| "whatever".to_owned());
    let err = Identity::resolve(&cli, only_key).unwrap_err();
    assert!(matches!(err, IdentityError::HalfEnv { set: "SB_AGENT_KEY", missing: "SB_AGENT_ID" }), "{err}");
}

/// Keys that are not 32 bytes of base64url without padding. Each carries `canary-4711` or
/// decodes from text that does, so an echo of the value would show.
fn malformed_keys() -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let canary32 = *b"canary-4711-canary-4711-canary-4";
    vec![
        "canary-4711 is not base64!".to_owned(),
        URL_SAFE_NO_PAD.encode(&canary32[..31]),                      // 31 bytes
        URL_SAFE_NO_PAD.encode(b"canary-4711-canary-4711-canary-47"), // 33 bytes
        URL_SAFE.encode(canary32),                                    // padded
        STANDARD.encode([0xfb; 32]) + "canary4711",                   // '+' and '/' are not base64url
    ]
}

#[test]
fn a_malformed_env_key_is_refused_naming_the_variable_without_echoing_it() {
    let config = common::temp_file(CONFIG);
    let config = config.path().to_str().unwrap();
    for bad in malformed_keys() {
        let cli = cli(&["--operator-url", "https://op.example"]);
        let env = |name: &str| match name {
            "SB_AGENT_ID" => Some("edge".to_owned()),
            "SB_AGENT_KEY" => Some(bad.clone()),
            _ => None,
        };
        let err = Identity::resolve(&cli, env).unwrap_err();
        assert!(matches!(err, IdentityError::BadKey("SB_AGENT_KEY")), "{bad}: {err}");

        let out = agent(
            &["--config", config, "--operator-url", "https://op.example"],
            &[("SB_AGENT_ID", "edge"), ("SB_AGENT_KEY", bad.as_str())],
        );
        assert!(!out.status.success(), "{bad} was accepted");
        let text = stderr(&out);
        assert!(text.contains("SB_AGENT_KEY is not an agent key"), "{text}");
        assert!(!text.contains(&bad) && !text.contains("canary"), "the key was echoed: {text}");
    }
    let cli = cli(&["--operator-url", "https://op.example"]);
    let empty = |name: &str| match name {
        "SB_AGENT_ID" => Some("edge".to_owned()),
        "SB_AGENT_KEY" => Some(String::new()),
        _ => None,
    };
    assert!(matches!(Identity::resolve(&cli, empty), Err(IdentityError::Empty("SB_AGENT_KEY"))));
}

#[test]
fn a_malformed_key_in_the_identity_file_is_refused_naming_the_field_without_echoing_it() {
    let config = common::temp_file(CONFIG);
    for bad in malformed_keys() {
        let file = common::temp_file(&identity_json("edge", &bad));
        let path = file.path().to_str().unwrap();
        let err = Identity::resolve(&cli(&["--identity-file", path]), |_| None).unwrap_err();
        assert!(matches!(err, IdentityError::BadKey("agentKey")), "{bad}: {err}");

        let out = agent(&["--config", config.path().to_str().unwrap()], &[("SB_IDENTITY_FILE", path)]);
        assert!(!out.status.success(), "{bad} was accepted");
        let text = stderr(&out);
        assert!(text.contains("agentKey is not an agent key"), "{text}");
        assert!(!text.contains(&bad) && !text.contains("canary"), "the key was echoed: {text}");
    }
}

/// Found by `fuzz/fuzz_targets/identity_file.rs`: an id with a `,` or a trailing space was
/// accepted, and the operator read another id out of the agent's signature header (or none),
/// so every request was refused as signed for someone else. The id must be a registration
/// name; the refusal says so at start-up, from the file and from the environment alike.
#[test]
fn an_agent_id_that_is_not_a_registration_name_is_refused_at_start_up() {
    let seed = AgentKeys::generate().seed_base64();
    for bad in ["edge,key=x", "edge ", " edge", "Edge", "edge.team", "-edge", &"e".repeat(64)] {
        let file = common::temp_file(&identity_json(bad, &seed));
        let path = file.path().to_str().unwrap();
        let err = Identity::resolve(&cli(&["--identity-file", path]), |_| None).unwrap_err();
        assert!(matches!(err, IdentityError::BadAgentId(_)), "{bad:?}: {err}");
        assert!(err.to_string().contains("DNS-1123 label"), "{err}");
        assert!(!err.to_string().contains(seed.as_str()));

        let env = |name: &str| match name {
            "SB_AGENT_ID" => Some(bad.to_owned()),
            "SB_AGENT_KEY" => Some(seed.to_string()),
            _ => None,
        };
        let err = Identity::resolve(&cli(&["--operator-url", "https://operator.example:8443"]), env).unwrap_err();
        assert!(matches!(err, IdentityError::BadAgentId(ref what) if what == "SB_AGENT_ID"), "{bad:?}: {err}");
    }
    let file = common::temp_file(&identity_json("edge-2", &seed));
    let loaded = Identity::resolve(&cli(&["--identity-file", file.path().to_str().unwrap()]), |_| None).unwrap();
    assert_eq!(loaded.agent_id, "edge-2");
}

#[test]
fn a_malformed_identity_file_exits_non_zero_naming_the_file_without_echoing_it() {
    let config = common::temp_file(CONFIG);
    let seed = AgentKeys::generate().seed_base64();
    for content in [
        // Truncated.
        format!(r#"{{"agentId":"edge","agentKey":"{}""#, seed.as_str()),
        // Wrong type.
        format!(r#"{{"agentId":"edge","agentKey":["{}"]}}"#, seed.as_str()),
        // Unknown field.
        identity_json("edge", &seed).replace("caBundle", "caBundel"),
        // An identity of the old, operator-minted kind.
        format!(r#"{{"agentId":"edge","agentSecret":"{}"}}"#, seed.as_str()),
    ] {
        let file = common::temp_file(&content);
        let path = file.path().to_str().unwrap();
        let out = agent(&["--config", config.path().to_str().unwrap()], &[("SB_IDENTITY_FILE", path)]);
        assert!(!out.status.success(), "{content} was accepted");
        let err = stderr(&out);
        assert!(err.contains(path) && err.contains("not a valid identity.json"), "{err}");
        assert_no_key_material(&out, &seed);
    }
    let file = common::temp_file(&identity_json("edge", ""));
    let err = Identity::resolve(&cli(&["--identity-file", file.path().to_str().unwrap()]), |_| None).unwrap_err();
    assert!(matches!(err, IdentityError::EmptyField { field: "agentKey", .. }), "{err}");
}

#[test]
fn the_keys_are_the_same_after_a_restart() {
    let keys = AgentKeys::generate();
    let seed = keys.seed_base64();
    let file = common::temp_file(&identity_json("edge", &seed));
    let env = [("SB_IDENTITY_FILE", file.path().to_str().unwrap())];
    let first = agent(&["--print-sealing-key"], &env);
    let second = agent(&["--print-sealing-key"], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout, second.stdout);
    let shown: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(shown["agentId"], "edge");
    assert_eq!(shown["sealingPublicKey"], keys.sealing().public.to_base64());
    assert_eq!(shown["sealingKeyId"], keys.sealing().key_id());
    assert_eq!(shown["authPublicKey"], keys.auth_public().to_base64());
    assert_eq!(shown["fingerprint"], keys.auth_public().fingerprint());
    assert_no_key_material(&first, &seed);

    // The same seed given through the environment gives the same keys.
    let via_env = agent(
        &["--print-sealing-key", "--operator-url", "https://op.example"],
        &[("SB_AGENT_ID", "edge"), ("SB_AGENT_KEY", seed.as_str())],
    );
    assert!(via_env.status.success(), "{}", stderr(&via_env));
    assert_eq!(via_env.stdout, first.stdout);

    // Another seed gives other keys: the output is not a constant.
    let other = common::temp_file(&identity_json("edge", &AgentKeys::generate().seed_base64()));
    let third = agent(&["--print-sealing-key"], &[("SB_IDENTITY_FILE", other.path().to_str().unwrap())]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_ne!(third.stdout, first.stdout);
}

// ---- `sb-agent identity new` -----------------------------------------------------------

/// Runs `sb-agent identity new --agent-id <id> --out <out> <extra...>`.
fn identity_new(id: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["identity", "new", "--agent-id", id, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    agent(&args, &[])
}

fn read_identity(path: &Path) -> AgentIdentity {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn identity_new_writes_a_private_identity_file_and_prints_the_registration_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let out = identity_new("edge", &path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "identity.json must be readable by its owner only, is {mode:o}");
    let file = read_identity(&path);
    assert_eq!(file.agent_id, "edge");
    assert!(file.operator_endpoint.is_empty() && file.ca_bundle.is_empty() && file.spki_sha256.is_empty());
    let keys = AgentKeys::from_seed_base64(&file.agent_key).expect("agentKey is a 32-byte base64url seed");
    let public = keys.auth_public();

    // The YAML snippet goes under AgentRegistration.spec.
    let yaml = stdout(&out);
    assert!(yaml.contains("authKeys:") && yaml.contains("publicKey:"), "{yaml}");
    assert!(yaml.contains(&public.fingerprint()) && public.fingerprint().starts_with("SHA256:"), "{yaml}");
    let spec: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("not YAML ({e}):\n{yaml}"));
    let printed = spec["authKeys"][0]["publicKey"].as_str().unwrap_or_else(|| panic!("no publicKey:\n{yaml}"));
    assert_eq!(printed, public.to_base64(), "the printed key is the file's");
    assert_no_key_material(&out, &file.agent_key);
    assert!(stderr(&out).contains("0600"), "{}", stderr(&out));

    // The identity it wrote is one the agent loads.
    let loaded = Identity::resolve(&cli(&["--identity-file", path.to_str().unwrap()]), |_| None).unwrap();
    assert_eq!(loaded.agent_id, "edge");
    assert_eq!(loaded.keys.auth_public(), public);
}

#[test]
fn identity_new_prints_json_with_the_public_half_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let out = identity_new("edge-json", &path, &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = read_identity(&path);
    let keys = AgentKeys::from_seed_base64(&file.agent_key).unwrap();
    let shown: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let mut fields: Vec<&str> = shown.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["agentId", "fingerprint", "publicKey", "sealingKeyId"]);
    assert_eq!(shown["agentId"], "edge-json");
    assert_eq!(shown["publicKey"], keys.auth_public().to_base64());
    assert_eq!(shown["fingerprint"], keys.auth_public().fingerprint());
    assert_eq!(shown["sealingKeyId"], keys.sealing().key_id());
    assert_no_key_material(&out, &file.agent_key);

    let bad = identity_new("edge", &dir.path().join("other.json"), &["--format", "toml"]);
    assert!(!bad.status.success());
    assert!(!dir.path().join("other.json").exists(), "nothing is written for a bad flag");
}

#[test]
fn identity_new_refuses_to_overwrite_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    std::fs::write(&path, "keep me").unwrap();
    let out = identity_new("edge", &path, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(path.to_str().unwrap()), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    assert!(stdout(&out).is_empty(), "no key is printed when nothing was written: {}", stdout(&out));

    // A real identity is not replaced by a second run either.
    let fresh = dir.path().join("fresh.json");
    assert!(identity_new("edge", &fresh, &[]).status.success());
    let before = std::fs::read_to_string(&fresh).unwrap();
    let again = identity_new("edge", &fresh, &[]);
    assert!(!again.status.success(), "{}", stdout(&again));
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), before);
}

#[test]
fn identity_new_gives_a_fresh_key_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    assert!(identity_new("edge", &a, &[]).status.success());
    assert!(identity_new("edge", &b, &[]).status.success());
    let (a, b) = (read_identity(&a), read_identity(&b));
    assert_ne!(a.agent_key, b.agent_key);
    let (a, b) =
        (AgentKeys::from_seed_base64(&a.agent_key).unwrap(), AgentKeys::from_seed_base64(&b.agent_key).unwrap());
    assert_ne!(a.auth_public(), b.auth_public());
    assert_ne!(a.sealing().public, b.sealing().public);
}

#[test]
fn identity_new_records_the_operator_coordinates_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let ca = common::temp_file("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let out = identity_new(
        "edge",
        &path,
        &[
            "--operator-url",
            "https://sb-operator.secrets-bridge:8443",
            "--ca-file",
            ca.path().to_str().unwrap(),
            "--spki-pin",
            "pin-base64",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = read_identity(&path);
    assert_eq!(file.operator_endpoint, "https://sb-operator.secrets-bridge:8443");
    assert_eq!(file.ca_bundle, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    assert_eq!(file.spki_sha256, "pin-base64");
    let loaded = Identity::resolve(&cli(&["--identity-file", path.to_str().unwrap()]), |_| None).unwrap();
    assert_eq!(loaded.operator_url, "https://sb-operator.secrets-bridge:8443");
    assert_eq!(loaded.spki_pin.as_deref(), Some("pin-base64"));
    assert!(loaded.ca_pem.is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")));
}

#[test]
fn print_sealing_key_shows_the_fingerprint_identity_new_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let created = identity_new("edge", &path, &["--format", "json"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();

    let out = agent(&["--print-sealing-key", "--identity-file", path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["fingerprint"], created["fingerprint"]);
    assert_eq!(shown["authPublicKey"], created["publicKey"]);
    assert_eq!(shown["sealingKeyId"], created["sealingKeyId"]);
    assert_eq!(shown["agentId"], "edge");
    assert_no_key_material(&out, &read_identity(&path).agent_key);
}

#[test]
fn identity_new_ignores_the_agent_environment_of_the_container_it_runs_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let existing = AgentKeys::generate();
    let existing_seed = existing.seed_base64();
    let config = common::temp_file(CONFIG);
    let out = agent(
        &["identity", "new", "--agent-id", "edge", "--out", path.to_str().unwrap(), "--format", "json"],
        &[
            ("SB_AGENT_CONFIG", config.path().to_str().unwrap()),
            ("SB_IDENTITY_FILE", "/nonexistent/identity.json"),
            ("SB_AGENT_ID", "edge"),
            ("SB_AGENT_KEY", existing_seed.as_str()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = read_identity(&path);
    let created = AgentKeys::from_seed_base64(&file.agent_key).unwrap();
    assert_eq!(shown["publicKey"], created.auth_public().to_base64());
    assert_ne!(
        created.auth_public(),
        existing.auth_public(),
        "a new identity is a new key, not the one in SB_AGENT_KEY"
    );
    assert_no_key_material(&out, &file.agent_key);
    assert_no_key_material(&out, &existing_seed);
}
