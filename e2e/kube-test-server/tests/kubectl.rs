//! The real kubectl binary against the server: CRDs, custom resources, printer columns,
//! every patch type, explain, strict field validation, dry-run, deletion, auth can-i.

mod common;
use common::*;

const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  labels: {app: demo}\nspec:\n  color: red\n  size: 3\n";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_crd_then_crud_of_custom_resources_with_printer_columns() {
    let s = server().await;
    let out = kubectl_ok(&s, "admin", &["apply", "-f", WIDGET_CRD]);
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"), "{out}");
    kubectl_ok(&s, "admin", &["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);

    let out = kubectl_stdin(&s, "admin", &["apply", "-f", "-"], WIDGET);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("widget.example.com/w1 created"));

    let table = kubectl_ok(&s, "admin", &["get", "widgets"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "COLOR", "SIZE", "READY", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "red", "3"], "{table}");
    // Short name and category resolve through discovery too.
    assert!(kubectl_ok(&s, "admin", &["get", "wg", "w1", "-o", "name"]).contains("widget.example.com/w1"));

    kubectl_ok(&s, "admin", &["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"size":4}}"#]);
    kubectl_ok(
        &s,
        "admin",
        &["patch", "widget", "w1", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/color","value":"blue"}]"#],
    );
    let err = kubectl_err(&s, "admin", &["patch", "widget", "w1", "-p", r#"{"spec":{"size":5}}"#]);
    assert!(err.contains("application/strategic-merge-patch+json is not supported"), "{err}");
    let applied = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  color: green\n";
    let out = kubectl_stdin(&s, "admin", &["apply", "--server-side", "--force-conflicts", "-f", "-"], applied);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = kubectl_ok(
        &s,
        "admin",
        &["get", "widget", "w1", "-o", "jsonpath={.spec.color} {.spec.size} {.metadata.generation}"],
    );
    assert_eq!(got, "green 4 4");

    let out = kubectl_ok(&s, "admin", &["delete", "widget", "w1"]);
    assert!(out.contains("widget.example.com \"w1\" deleted"), "{out}");
    let err = kubectl_err(&s, "admin", &["get", "widget", "w1"]);
    assert!(err.contains("widgets.example.com \"w1\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_explain_shows_crd_field_docs() {
    let s = server_with_widgets().await;
    let out = kubectl_ok(&s, "admin", &["explain", "widget.spec"]);
    assert!(out.contains("Desired state of the widget."), "{out}");
    assert!(out.contains("color") && out.contains("Paint colour of the widget."), "{out}");
    assert!(out.contains("Free-text label, at most 16 characters."), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_strict_field_validation_rejects_unknown_fields() {
    let s = server_with_widgets().await;
    let bad = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  color: red\n  foo: 1\n";
    let out = kubectl_stdin(&s, "admin", &["apply", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("strict decoding error: unknown field \"spec.foo\""), "{err}");
    // Warn keeps the object, drops the field, and tells.
    let out = kubectl_stdin(&s, "admin", &["create", "--validate=warn", "-f", "-"], bad);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"spec.foo\""));
    let got = kubectl_ok(&s, "admin", &["get", "widget", "w2", "-o", "jsonpath={.spec}"]);
    assert!(!got.contains("foo"), "{got}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_dry_run_server_stores_nothing() {
    let s = server_with_widgets().await;
    let out = kubectl_stdin(&s, "admin", &["apply", "--dry-run=server", "-f", "-"], WIDGET);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(server dry run)"));
    let err = kubectl_err(&s, "admin", &["get", "widget", "w1"]);
    assert!(err.contains("not found"), "{err}");
    assert!(!s.dump_all().iter().any(|o| o["kind"] == "Widget"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_builtins_secret_string_data_and_namespace_deletion() {
    let s = server().await;
    kubectl_ok(&s, "admin", &["create", "namespace", "team-a"]);
    kubectl_ok(
        &s,
        "admin",
        &["-n", "team-a", "create", "secret", "generic", "creds", "--from-literal=password=hunter2"],
    );
    let sd = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sd\n  namespace: team-a\nstringData:\n  token: abc\n";
    let out = kubectl_stdin(&s, "admin", &["apply", "-f", "-"], sd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = kubectl_ok(&s, "admin", &["-n", "team-a", "get", "secret", "sd", "-o", "jsonpath={.data.token} {.type}"]);
    assert_eq!(got, "YWJj Opaque");
    let table = kubectl_ok(&s, "admin", &["-n", "team-a", "get", "secrets"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("creds") && table.contains("Opaque"), "{table}");
    kubectl_ok(&s, "admin", &["delete", "namespace", "team-a", "--timeout=20s"]);
    assert!(!s.dump_all().iter().any(|o| o["metadata"]["namespace"] == "team-a"));
    let err = kubectl_err(&s, "admin", &["get", "namespace", "team-a"]);
    assert!(err.contains("namespaces \"team-a\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_and_unprivileged_users_are_refused() {
    let s = server_with_widgets().await;
    let out = kubectl(&s, "admin", &["get", "widgets", "--token", "wrong"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the server has asked for the client to provide credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = kubectl_err(&s, "bob", &["get", "widgets", "-n", "team-a"]);
    assert!(
        err.contains(
            "User \"bob\" cannot list resource \"widgets\" in API group \"example.com\" in the namespace \"team-a\""
        ),
        "{err}"
    );
    let who = kubectl_ok(&s, "alice", &["auth", "whoami"]);
    assert!(who.contains("alice") && who.contains("team-a"), "{who}");
}

const ROLE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: approver, namespace: team-a}
rules:
- apiGroups: [secrets-bridge.io]
  resources: [secretreadrequests]
  verbs: [get, list, approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-approves, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: approver}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_auth_can_i_follows_stored_rbac() {
    let s = server().await;
    for crd in product_crds() {
        s.apply_yaml_as_admin(crd.to_str().unwrap()).await.expect("product CRD applies");
    }
    if product_crds().is_empty() {
        panic!("product CRDs missing under crds/: run the crdgen step");
    }
    let can = |user: &str, ns: &str| {
        let out = kubectl(&s, user, &["auth", "can-i", "approve", "secretreadrequests", "-n", ns]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(can("bob", "team-a").starts_with("no"));
    s.apply_yaml_as_admin(ROLE).await.expect("RBAC applies");
    assert_eq!(can("bob", "team-a"), "yes");
    assert!(can("bob", "team-b").starts_with("no"));
    assert!(can("alice", "team-a").starts_with("no"));
    let list = kubectl_ok(&s, "bob", &["auth", "can-i", "--list", "-n", "team-a"]);
    let row = list.lines().find(|l| l.starts_with("secretreadrequests.secrets-bridge.io")).unwrap_or_default();
    assert!(row.contains("approve"), "can-i --list shows the role's verbs: {list}");
    assert!(list.contains("selfsubjectaccessreviews.authorization.k8s.io"), "{list}");
    // The same RBAC now lets bob list them in team-a, and nowhere else.
    kubectl_ok(&s, "bob", &["get", "secretreadrequests", "-n", "team-a"]);
    kubectl_err(&s, "bob", &["get", "secretreadrequests", "-n", "team-b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_impersonation_needs_the_impersonate_verb() {
    let s = server_with_widgets().await;
    let err = kubectl_err(&s, "admin", &["get", "widgets", "--as", "bob"]);
    assert!(err.contains("User \"bob\" cannot list resource \"widgets\""), "{err}");
    let out = kubectl(&s, "admin", &["auth", "can-i", "list", "widgets", "--as", "bob"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert_eq!(out.status.code(), Some(1), "can-i exits 1 on no");
    let err = kubectl_err(&s, "bob", &["get", "widgets", "--as", "alice"]);
    assert!(err.contains("Forbidden"), "{err}");
    let bob = s.client_as("bob").await.unwrap();
    let req = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("Impersonate-User", "alice")
        .body(Vec::new())
        .unwrap();
    let (code, _, msg) = api_error(bob.request::<serde_json::Value>(req).await);
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_watch_prints_table_rows() {
    let s = server_with_widgets().await;
    let out = kubectl_stdin(&s, "admin", &["apply", "-f", "-"], WIDGET);
    assert!(out.status.success());
    let kubeconfig = s.kubeconfig_for("admin").unwrap();
    let child = std::process::Command::new(kubectl_path())
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "get", "widgets", "-w", "--request-timeout=3s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    kubectl_ok(&s, "admin", &["patch", "widget", "w1", "--type", "merge", "-p", r#"{"spec":{"size":9}}"#]);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    // Under load the patch may land before the watch starts; the row then shows in the list.
    assert!(lines.len() >= 2, "{text}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("COLOR"), "{text}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("NAME")).count(), 1, "one header: {text}");
    assert!(lines.iter().any(|l| l.split_whitespace().take(3).eq(["w1", "red", "9"])), "{text}");
}
