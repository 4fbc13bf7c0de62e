//! kubeconfig files pointing at the server, with its CA and a user's bearer token.

use base64::Engine;
use serde_json::{Value, json};

/// A kubeconfig with one context per `(user, token)`; the first is current.
pub fn render(server_url: &str, ca_pem: &str, users: &[(String, String)]) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let cluster = "kube-test-server";
    let users_json: Vec<Value> = users.iter().map(|(u, t)| json!({"name": u, "user": {"token": t}})).collect();
    let contexts: Vec<Value> = users
        .iter()
        .map(|(u, _)| json!({"name": u, "context": {"cluster": cluster, "user": u, "namespace": "default"}}))
        .collect();
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server_url, "certificate-authority-data": ca}}],
        "users": users_json,
        "contexts": contexts,
        "current-context": users.first().map(|(u, _)| u.clone()).unwrap_or_default(),
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}
