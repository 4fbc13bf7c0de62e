//! Key custody: after read and patch flows, nothing the control plane holds — every object
//! through the API (Secrets included), every file of etcd's data directory, the operator's
//! data directory, its store with the encrypted columns decrypted, its logs — contains key
//! material that opens a `spec.values` envelope. Every key-shaped string (base64 or hex of
//! 32 bytes) is tried as an X25519 private key and as an agent seed, and every token as HKDF
//! input (how a key was once derived from an operator-minted secret). The search is shown to
//! find the agent's seed once it is planted in the cluster.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use sb_core::binding::patch_aad;
use sb_core::crd::{PatchPhase, ReadPhase, SecretPatch};
use sb_core::identity::AgentKeys;
use sb_core::protocol::AgentIdentity;
use sb_core::seal::{KeyPair, PrivateKey, PublicKey, Purpose, open};
use sb_e2e::kube::files_under;
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every byte string the control plane keeps, named by where it came from.
async fn control_plane_bytes(s: &Stack) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for object in s.cluster.server.dump_all().await.unwrap() {
        out.push(("an API object".to_owned(), serde_json::to_vec(&object).unwrap()));
    }
    for dir in [s.cluster.server.etcd_dir(), s.operator.data_path().to_path_buf()] {
        for file in files_under(&dir).unwrap() {
            out.push((file.display().to_string(), std::fs::read(&file).unwrap()));
        }
    }
    out.push(("the operator's logs".to_owned(), s.operator.logs().into_bytes()));
    // The store's envelope-encrypted columns, opened with the operator's own key file.
    let keys = sb_operator::kms::KeyManagerConfig::Local { key_file: s.operator.data_path().join("kek.bin") }
        .build()
        .await
        .unwrap();
    let url = format!("sqlite://{}?mode=rw", s.operator.database_path().display());
    let store = sb_operator::store::Store::connect(&url, keys, Default::default()).await.unwrap();
    let columns = store.decrypted_columns().await.unwrap();
    out.extend(columns.into_iter().map(|(name, bytes)| (format!("store column {name}"), bytes)));
    out
}

/// Tokens of key-ish characters (base64, base64url, hex) of at least 16 characters.
fn tokens(bytes: &[u8]) -> HashSet<Vec<u8>> {
    let keyish = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
    bytes.split(|b| !keyish(b)).filter(|t| (16..=128).contains(&t.len())).map(<[u8]>::to_vec).collect()
}

/// The 32-byte values a token may encode.
fn decoded(token: &[u8]) -> Vec<[u8; 32]> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = String::from_utf8_lossy(token);
    let mut found = Vec::new();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(text.as_bytes())
            && let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            found.push(raw);
        }
    }
    if let Ok(bytes) = hex::decode(text.as_bytes())
        && let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        found.push(raw);
    }
    found
}

/// Where a key that yields `sealing` was found: (place, how it was used). Each distinct
/// token is tried once; a token that works is reported at every place it appears.
fn keys_opening(haystacks: &[(String, Vec<u8>)], sealing: &PublicKey) -> Vec<(String, String)> {
    let mut verdicts: HashMap<Vec<u8>, Vec<&'static str>> = HashMap::new();
    let mut hits = Vec::new();
    for (place, bytes) in haystacks {
        for token in tokens(bytes) {
            let ways = verdicts.entry(token).or_insert_with_key(|token| {
                let mut ways = Vec::new();
                if KeyPair::derive_from_seed(token).public == *sealing {
                    ways.push("HKDF input");
                }
                for raw in decoded(token) {
                    use base64::Engine as _;
                    let as_private = base64::engine::general_purpose::STANDARD.encode(raw);
                    if PrivateKey::from_base64(&as_private).is_ok_and(|k| k.public_key() == *sealing) {
                        ways.push("X25519 private key");
                    }
                    if AgentKeys::from_seed(&raw).sealing().public == *sealing {
                        ways.push("agent seed");
                    }
                }
                ways
            });
            hits.extend(ways.iter().map(|how| (place.clone(), (*how).to_owned())));
        }
    }
    hits
}

/// The key id the patch's sealed value names (it is in the decrypted job payload).
async fn patch_kid(s: &Stack) -> String {
    let patches: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    patches.get("rotate").await.unwrap().spec.values["password"].kid.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_the_control_plane_holds_opens_a_patch_value() {
    let mut s = Stack::start(StackOptions::default()).await.unwrap();
    // The agent's boundary: its identity file, which the control plane never saw.
    let identity: AgentIdentity =
        serde_json::from_slice(&std::fs::read(s.agent.dir.path().join("identity.json")).unwrap()).unwrap();
    let agent_keys = AgentKeys::from_seed_base64(&identity.agent_key).unwrap();
    let sealing = agent_keys.sealing().public;

    // A read and a patch, as people do them.
    let (old, new_pw) = (new_canary(), new_canary());
    let path = s.ref_of("db");
    s.bao.put(&path, &BTreeMap::from([("password", old.as_str()), ("user", "svc")])).await.unwrap();
    let target = format!("edge/vault:{path}");
    s.kubectl(
        "alice",
        &["sb", "read", &target, "--key", "password", "--reason", "INC-1", "--name", "db", "-n", "team-a"],
    )
    .await
    .expect_ok("read");
    s.wait_read("db", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/db", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve read");
    s.wait_read("db", ReadPhase::Delivered).await.unwrap();
    let home = s.home_of("alice");
    std::fs::write(home.join("pw.txt"), &new_pw).unwrap();
    let args = ["sb", "patch", &target, "password=@pw.txt", "--reason", "rotation", "--name", "rotate", "-n", "team-a"];
    s.kubectl_in("alice", &args, None, Some(&home)).await.unwrap().expect_ok("patch");
    s.wait_patch("rotate", PatchPhase::Pending).await.unwrap();
    // With the agent stopped, the approved patch waits in the store as an encrypted job
    // payload: search the store then too, its columns decrypted.
    s.agent.terminate(std::time::Duration::from_secs(30)).unwrap();
    s.kubectl("bob", &["approve", "sp/rotate", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve patch");
    s.wait_patch("rotate", PatchPhase::Queued).await.unwrap();
    let mut haystacks = control_plane_bytes(&s).await;
    let kid = patch_kid(&s).await;
    let queued: Vec<&(String, Vec<u8>)> = haystacks.iter().filter(|(p, _)| p.ends_with("/payload")).collect();
    assert!(
        queued.iter().any(|(_, bytes)| String::from_utf8_lossy(bytes).contains(&kid)),
        "the queued patch's decrypted payload holds its sealed value: {:?}",
        queued.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    s.agent.restart().unwrap();
    s.wait_patch("rotate", PatchPhase::Executed).await.unwrap();

    let patches: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    let patch = patches.get("rotate").await.unwrap();
    let envelope = &patch.spec.values["password"];
    let aad = patch_aad("team-a", "rotate", &patch.spec.target, "password");
    assert_eq!(
        open(agent_keys.sealing(), Purpose::PatchValue, &aad, envelope).unwrap().expose(),
        new_pw.as_bytes(),
        "the agent's own key opens the patch (the envelope under test is real)"
    );

    haystacks.extend(control_plane_bytes(&s).await);
    assert!(haystacks.iter().any(|(p, _)| p.contains("etcd")), "etcd was searched");
    let hits = keys_opening(&haystacks, &sealing);
    assert!(hits.is_empty(), "key material that opens the patch values is in the control plane: {hits:?}");

    // Positive control: the agent's seed put into the cluster is found and opens the value.
    let planted = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some("leaked-identity".into()), ..Default::default() },
        data: Some(BTreeMap::from([("identity.json".to_owned(), serde_json::to_string(&identity).unwrap())])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(s.admin.clone(), "team-a").create(&PostParams::default(), &planted).await.unwrap();
    let hits = keys_opening(&control_plane_bytes(&s).await, &sealing);
    assert!(hits.iter().any(|(_, how)| how == "agent seed"), "the search is blind to a planted seed: {hits:?}");
    assert!(hits.iter().any(|(place, _)| place.contains("etcd")), "found in etcd's files too: {hits:?}");
    s.stop().await.unwrap();
}
