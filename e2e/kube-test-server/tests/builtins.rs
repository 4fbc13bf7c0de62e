//! Built-in kinds: RBAC escalation prevention, immutable fields, label syntax, unknown
//! top-level fields, namespace existence.

mod common;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

const TEAM_A_ADMIN: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-manager, namespace: team-a}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, create, update, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-manages-roles, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role-manager}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
"#;

fn role(name: &str, group: &str, resource: &str, verbs: &[&str]) -> Role {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "team-a"},
        "rules": [{"apiGroups": [group], "resources": [resource], "verbs": verbs}]}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_refuses_to_grant_permissions_the_writer_lacks() {
    let s = server().await;
    s.apply_yaml_as_admin(TEAM_A_ADMIN).await.unwrap();
    let roles: Api<Role> = Api::namespaced(s.client_as("alice").await.unwrap(), "team-a");
    roles
        .create(&PostParams::default(), &role("cm-reader", "", "configmaps", &["get"]))
        .await
        .expect("subset of own permissions");
    let (code, reason, msg) = api_error(
        roles
            .create(&PostParams::default(), &role("approver", "secrets-bridge.io", "secretreadrequests", &["approve"]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(msg.contains("is attempting to grant RBAC permissions not currently held"), "{msg}");
    assert!(msg.contains("Resources:[\"secretreadrequests\"]"), "{msg}");

    // Binding a role whose permissions alice lacks is refused too; one she holds is fine.
    s.apply_yaml_as_admin("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: approver, namespace: team-a}\nrules:\n- {apiGroups: [secrets-bridge.io], resources: [secretreadrequests], verbs: [approve]}\n").await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(s.client_as("alice").await.unwrap(), "team-a");
    let rb = |name: &str, role: &str| -> RoleBinding {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "team-a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}))
        .unwrap()
    };
    assert_eq!(api_error(bindings.create(&PostParams::default(), &rb("self-approve", "approver")).await).0, 403);
    let ok = bindings.create(&PostParams::default(), &rb("reader", "cm-reader")).await.unwrap();
    // roleRef is immutable.
    let change = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "role-manager"}});
    let (code, _, msg) =
        api_error(bindings.patch(&ok.metadata.name.unwrap(), &PatchParams::default(), &Patch::Merge(&change)).await);
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("roleRef: Invalid value: cannot change roleRef"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_secrets_labels_and_namespaces_are_validated() {
    let s = server().await;
    let client = s.client_as("admin").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let sec: Secret = serde_json::from_value(json!({"metadata": {"name": "frozen"}, "immutable": true,
        "stringData": {"k": "v"}}))
    .unwrap();
    let created = secrets.create(&PostParams::default(), &sec).await.unwrap();
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(created.string_data.is_none(), "stringData is folded into data");
    let (code, _, msg) = api_error(
        secrets.patch("frozen", &PatchParams::default(), &Patch::Merge(json!({"stringData": {"k": "w"}}))).await,
    );
    assert_eq!(code, 422);
    assert!(msg.contains("data: Forbidden: field is immutable when `immutable` is set"), "{msg}");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let bad = ConfigMap {
        metadata: ObjectMeta {
            name: Some("c".into()),
            labels: Some([("app".to_string(), "not valid!".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let (code, _, msg) = api_error(cms.create(&PostParams::default(), &bad).await);
    assert_eq!(code, 422);
    assert!(msg.contains("metadata.labels: Invalid value: \"not valid!\""), "{msg}");

    let nowhere: Api<ConfigMap> = Api::namespaced(client, "does-not-exist");
    let (code, _, msg) = api_error(
        nowhere
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: ObjectMeta { name: Some("c".into()), ..Default::default() },
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!((code, msg.as_str()), (404, "namespaces \"does-not-exist\" not found"));

    // Unknown top-level fields of a built-in: strict decoding error from kubectl.
    let out = kubectl_stdin(
        &s,
        "admin",
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndatta: {a: b}\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field \"datta\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_recorder_secret_decoding_and_builtin_tables() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let s = server().await;
    let client = s.client_as("admin").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta { name: Some("subject".into()), ..Default::default() },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "test-controller".into(), instance: None });
    let ev = Event {
        type_: EventType::Normal,
        reason: "Checked".into(),
        note: Some("all good".into()),
        action: "Check".into(),
        secondary: None,
    };
    let reference = kube::Resource::object_ref(&cm, &());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "the second publish patches the series");
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
    // One storage for both Event APIs: the core view and kubectl see the recorder's event.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(s.client_as("admin").await.unwrap(), "default");
    let by_object = core.list(&kube::api::ListParams::default().fields("involvedObject.name=subject")).await.unwrap();
    assert_eq!(by_object.items.len(), 1);
    assert_eq!(by_object.items[0].message.as_deref(), Some("all good"));
    assert_eq!(by_object.items[0].reporting_component.as_deref(), Some("test-controller"));
    let table = kubectl_ok(&s, "admin", &["get", "events"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{table}");
    assert!(table.contains("Checked") && table.contains("configmap/subject") && table.contains("all good"), "{table}");

    let secrets: Api<Secret> = Api::namespaced(client, "default");
    // Secret data that is not base64 does not even decode: 400 from the server.
    let out = kubectl_stdin(
        &s,
        "admin",
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b}\ndata: {k: \"not base64!\"}\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("illegal base64 data"), "{err}");
    let bad_key: Secret =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "stringData": {"bad key": "v"}})).unwrap();
    let (code, _, msg) = api_error(secrets.create(&PostParams::default(), &bad_key).await);
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("data[bad key]: Invalid value: \"bad key\": a valid config key"), "{msg}");

    s.apply_yaml_as_admin(TEAM_A_ADMIN).await.unwrap();
    let table = kubectl_ok(&s, "admin", &["get", "rolebindings", "-n", "team-a"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ROLE", "AGE"], "{table}");
    assert!(table.contains("Role/role-manager"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregated_cluster_roles_pick_up_labelled_roles() {
    let s = server_with_widgets().await;
    s.apply_yaml_as_admin(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bob-edits, namespace: team-a}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}\n",
    )
    .await
    .unwrap();
    kubectl_ok(&s, "bob", &["get", "configmaps", "-n", "team-a"]);
    kubectl_err(&s, "bob", &["get", "widgets", "-n", "team-a"]);
    s.apply_yaml_as_admin(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: widget-editor\n  labels: {rbac.authorization.k8s.io/aggregate-to-edit: \"true\"}\nrules:\n- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch, create]}\n",
    )
    .await
    .unwrap();
    let mut ok = false;
    for _ in 0..30 {
        if kubectl(&s, "bob", &["get", "widgets", "-n", "team-a"]).status.success() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "edit aggregates the widget-editor rules");
    let admin_rules = kubectl_ok(&s, "admin", &["get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}"]);
    assert!(admin_rules.contains("widgets"), "admin aggregates edit: {admin_rules}");
}

#[tokio::test(flavor = "multi_thread")]
async fn find_plaintext_sees_base64_secret_data_and_past_versions() {
    let s = server().await;
    let secrets: Api<Secret> = Api::namespaced(s.client_as("admin").await.unwrap(), "default");
    assert!(s.find_plaintext("canary-8f2d").is_empty());
    let sec: Secret =
        serde_json::from_value(json!({"metadata": {"name": "leak"}, "stringData": {"v": "xx canary-8f2d xx"}}))
            .unwrap();
    secrets.create(&PostParams::default(), &sec).await.unwrap();
    let hits = s.find_plaintext("canary-8f2d");
    assert!(hits.iter().any(|h| h.starts_with("secrets/default/leak data.v (base64-decoded)")), "{hits:?}");
    // Overwritten, the old version is still in the history (as in etcd before compaction).
    secrets.patch("leak", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "b2s="}}))).await.unwrap();
    let hits = s.find_plaintext("canary-8f2d");
    assert!(!hits.is_empty() && hits.iter().all(|h| h.contains("(history rv")), "{hits:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_and_annotations_are_refused() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(s.client_as("admin").await.unwrap(), "default");
    let big = "x".repeat(300 * 1024);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("a".into()),
            annotations: Some([("k".to_string(), big.clone())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let (code, _, msg) = api_error(cms.create(&PostParams::default(), &cm).await);
    assert_eq!(code, 422);
    assert!(msg.contains("metadata.annotations: Too long: must have at most 262144 bytes"), "{msg}");
    let huge = ConfigMap {
        metadata: ObjectMeta { name: Some("b".into()), ..Default::default() },
        data: Some([("k".to_string(), "y".repeat(4 << 20))].into()),
        ..Default::default()
    };
    let (code, reason, _) = api_error(cms.create(&PostParams::default(), &huge).await);
    assert_eq!((code, reason.as_str()), (413, "RequestEntityTooLarge"));
}
