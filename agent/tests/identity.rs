//! Identity: env credentials win over the file; a missing or malformed identity stops the
//! binary with a message naming the variable or file; the sealing key survives restarts.

mod common;

use clap::Parser;
use sb_agent::cli::Cli;
use sb_agent::identity::Identity;
use sb_core::seal::derive_agent_keypair;
use std::process::{Command, Output};

const CONFIG: &str = "providers:\n  - name: vault\n    type: Vault\n    address: http://127.0.0.1:18200\n    auth: { method: token, tokenEnv: SB_TEST_UNUSED }\n    allowedPrefixes: [\"\"]\n";

fn identity_json(id: &str, secret: &str) -> String {
    serde_json::json!({
        "agentId": id,
        "agentSecret": secret,
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
        "SB_AGENT_SECRET",
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn env_credentials_win_over_the_identity_file() {
    let file = common::temp_file(&identity_json("from-file", "file-secret"));
    let cli = Cli::try_parse_from([
        "sb-agent",
        "--config",
        "unused.yaml",
        "--identity-file",
        file.path().to_str().unwrap(),
        "--operator-url",
        "https://op.example:8443",
    ])
    .unwrap();
    let env = |name: &str| match name {
        "SB_AGENT_ID" => Some("from-env".to_owned()),
        "SB_AGENT_SECRET" => Some("env-secret".to_owned()),
        _ => None,
    };
    let identity = Identity::resolve(&cli, env).unwrap();
    assert_eq!(identity.agent_id, "from-env");
    assert_eq!(identity.operator_url, "https://op.example:8443");
    assert_eq!(identity.sealing_keypair().public, derive_agent_keypair(b"env-secret").public);

    let from_file = Identity::resolve(&cli, |_| None).unwrap();
    assert_eq!(from_file.agent_id, "from-file");
    assert!(!format!("{from_file:?}").contains("file-secret"));
}

#[test]
fn a_missing_identity_exits_non_zero_naming_the_variables() {
    let config = common::temp_file(CONFIG);
    let out = agent(&["--config", config.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("SB_IDENTITY_FILE") && err.contains("SB_AGENT_ID"), "{err}");

    let out = agent(&["--config", config.path().to_str().unwrap()], &[("SB_AGENT_ID", "edge")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SB_AGENT_SECRET is not"), "{}", stderr(&out));

    let out =
        agent(&["--config", config.path().to_str().unwrap()], &[("SB_IDENTITY_FILE", "/nonexistent/identity.json")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/identity.json"), "{}", stderr(&out));
}

#[test]
fn a_malformed_identity_file_exits_non_zero_naming_the_file_without_echoing_it() {
    let config = common::temp_file(CONFIG);
    for content in [
        r#"{"agentId":"edge","agentSecret":"canary-secret-4711""#.to_owned(),
        r#"{"agentId":"edge","agentSecret":["canary-secret-4711"]}"#.to_owned(),
        identity_json("edge", "canary-secret-4711").replace("caBundle", "caBundel"),
    ] {
        let file = common::temp_file(&content);
        let path = file.path().to_str().unwrap();
        let out = agent(&["--config", config.path().to_str().unwrap()], &[("SB_IDENTITY_FILE", path)]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(path) && err.contains("not a valid identity.json"), "{err}");
        assert!(!err.contains("canary-secret-4711"), "the secret leaked: {err}");
    }
}

#[test]
fn the_sealing_public_key_is_the_same_after_a_restart() {
    let file = common::temp_file(&identity_json("edge", "restart-secret-0123456789"));
    let env = [("SB_IDENTITY_FILE", file.path().to_str().unwrap())];
    let first = agent(&["--print-sealing-key"], &env);
    let second = agent(&["--print-sealing-key"], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(first.stdout, second.stdout);
    let shown: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let expected = derive_agent_keypair(b"restart-secret-0123456789");
    assert_eq!(shown["sealingPublicKey"], expected.public.to_base64());
    assert_eq!(shown["sealingKeyId"], expected.key_id());

    // The same credential given through the environment gives the same key.
    let via_env = agent(
        &["--print-sealing-key", "--operator-url", "https://op.example"],
        &[("SB_AGENT_ID", "edge"), ("SB_AGENT_SECRET", "restart-secret-0123456789")],
    );
    assert_eq!(via_env.stdout, first.stdout);
}
