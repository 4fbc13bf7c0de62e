//! The product's own CRDs, examples and admission policies, evaluated the way the test
//! server will: if these pass here, the e2e scenarios see real-server behaviour.

use kts_policy::admission::{AdmissionRequest, evaluate};
use kts_policy::schema::CrdSchema;
use kts_policy::{Attributes, UserInfo};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// kind → compiled schema of its first served version.
fn schemas() -> Vec<(String, CrdSchema)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("crds")).expect("crds/ exists") {
        let path = entry.unwrap().path();
        for crd in docs(path.strip_prefix(repo("")).unwrap().to_str().unwrap()) {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let compiled = CrdSchema::new(schema).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            out.push((kind, compiled));
        }
    }
    out
}

fn schema_for<'a>(all: &'a [(String, CrdSchema)], kind: &str) -> &'a CrdSchema {
    &all.iter().find(|(k, _)| k == kind).unwrap_or_else(|| panic!("no CRD for {kind}")).1
}

#[test]
fn every_shipped_crd_compiles_and_every_example_is_valid() {
    let all = schemas();
    assert_eq!(all.len(), 5);
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        for mut obj in docs(path.strip_prefix(repo("")).unwrap().to_str().unwrap()) {
            let Some(kind) = obj["kind"].as_str().map(str::to_string) else { continue };
            let Some((_, schema)) = all.iter().find(|(k, _)| *k == kind) else { continue };
            schema.apply_defaults(&mut obj);
            schema.prune(&mut obj);
            assert_eq!(schema.validate(&obj, None), vec![], "{}", path.display());
        }
    }
}

fn read_request() -> Value {
    docs("examples/secretreadrequest.yaml").remove(0)
}

#[test]
fn read_request_spec_is_immutable_and_delivery_is_defaulted() {
    let all = schemas();
    let srr = schema_for(&all, "SecretReadRequest");
    let mut created = read_request();
    created["spec"].as_object_mut().unwrap().remove("delivery");
    srr.apply_defaults(&mut created);
    assert_eq!(created["spec"]["delivery"], json!({"mode": "RevealOnce", "ttlSeconds": 900}));

    let mut changed = created.clone();
    changed["spec"]["justification"] = json!("something else");
    let errs = srr.validate(&changed, Some(&created));
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].field.as_str(), errs[0].message.as_str()),
        ("spec", r#"Invalid value: "object": spec is immutable"#)
    );

    let mut bad = created.clone();
    bad["spec"]["target"]["agent"] = json!("Edge_1");
    bad["spec"]["delivery"]["ttlSeconds"] = json!(10);
    let messages: Vec<String> =
        srr.validate(&bad, None).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    assert_eq!(
        messages,
        vec![
            r#"spec.delivery.ttlSeconds: Invalid value: 10: spec.delivery.ttlSeconds in body should be greater than or equal to 60"#,
            r#"spec.target.agent: Invalid value: "Edge_1": spec.target.agent in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"#,
        ]
    );
}

const OPERATOR: &str = "system:serviceaccount:secrets-bridge:sb-operator";

fn policies() -> (Vec<Value>, Vec<Value>) {
    docs("charts/secrets-bridge/files/admission-policies.yaml")
        .into_iter()
        .partition(|d| d["kind"] == "ValidatingAdmissionPolicy")
}

fn approval(who: &str) -> Value {
    json!({"approver": who, "decision": "Approve", "reason": "ok", "time": "2026-01-01T00:00:00Z"})
}

fn with_status(approvals: Vec<Value>) -> Value {
    let mut o = read_request();
    o["status"] = json!({"phase": "Pending", "approvals": approvals});
    o
}

fn update_status(who: &str, old: Value, new: Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: "UPDATE".into(),
        api_group: "secrets-bridge.io".into(),
        api_version: "v1alpha1".into(),
        kind: "SecretReadRequest".into(),
        resource: "secretreadrequests".into(),
        sub_resource: "status".into(),
        name: "db-password".into(),
        namespace: "team-a".into(),
        user: UserInfo { username: who.into(), uid: String::new(), groups: vec!["system:authenticated".into()] },
        object: Some(new),
        old_object: Some(old),
        namespace_object: None,
        dry_run: false,
    }
}

/// bob and carol hold `approve` on read requests in team-a; the GitOps bot may submit for others.
fn rbac(a: &Attributes) -> bool {
    match a.verb.as_str() {
        "approve" => ["bob", "carol"].contains(&a.user.username.as_str()) && a.namespace == "team-a",
        "submit-for-others" => a.user.username == "system:serviceaccount:argocd:argocd",
        _ => false,
    }
}

fn cause(r: Result<(), kts_policy::admission::AdmissionDenial>) -> String {
    r.err().map(|d| format!("{} {}", d.code, d.cause())).unwrap_or_default()
}

#[test]
fn shipped_approval_policy_allows_an_authorized_approver_and_refuses_everyone_else() {
    let (p, b) = policies();
    let old = with_status(vec![]);
    let ok = update_status("bob", old.clone(), with_status(vec![approval("bob")]));
    assert_eq!(evaluate(&p, &b, &ok, &rbac), Ok(()));

    let deny = |who: &str, new: Value| cause(evaluate(&p, &b, &update_status(who, old.clone(), new), &rbac));
    let prefix =
        "ValidatingAdmissionPolicy 'secrets-bridge-approvals' with binding 'secrets-bridge-approvals' denied request:";
    assert_eq!(
        deny("bob", with_status(vec![approval("carol")])),
        format!(r#"403 {prefix} the approver must be you ("bob")"#)
    );
    assert_eq!(
        deny("alice", with_status(vec![approval("alice")])),
        format!("403 {prefix} the requester cannot approve or deny their own request")
    );
    assert_eq!(
        deny("dave", with_status(vec![approval("dave")])),
        format!(r#"403 {prefix} user "dave" lacks the RBAC verb approve on secretreadrequests in namespace team-a"#)
    );
    assert_eq!(
        deny("bob", with_status(vec![approval("bob"), approval("carol")])),
        format!("422 {prefix} an approval appends exactly one entry to status.approvals and keeps the existing ones")
    );
    let mut phase = with_status(vec![approval("bob")]);
    phase["status"]["phase"] = json!("Approved");
    assert_eq!(
        deny("bob", phase.clone()),
        format!(
            "403 {prefix} approvers may only append to status.approvals; the rest of status belongs to the operator"
        )
    );
    // Deciding twice is refused.
    let mut second = approval("bob");
    second["decision"] = json!("Deny");
    let again = update_status("bob", with_status(vec![approval("bob")]), with_status(vec![approval("bob"), second]));
    assert!(cause(evaluate(&p, &b, &again, &rbac)).contains("you have already decided on this request"));
    // The operator writes the rest of status freely.
    assert_eq!(evaluate(&p, &b, &update_status(OPERATOR, old, phase), &|_| false), Ok(()));
}

#[test]
fn shipped_requester_policy_binds_the_requester_on_create() {
    let (p, b) = policies();
    let create = |who: &str| AdmissionRequest {
        operation: "CREATE".into(),
        sub_resource: String::new(),
        old_object: None,
        object: Some(read_request()),
        ..update_status(who, Value::Null, Value::Null)
    };
    assert_eq!(evaluate(&p, &b, &create("alice"), &rbac), Ok(()));
    assert_eq!(evaluate(&p, &b, &create("system:serviceaccount:argocd:argocd"), &rbac), Ok(()));
    let d = evaluate(&p, &b, &create("mallory"), &rbac).unwrap_err();
    assert_eq!(
        d.message,
        r#"secretreadrequests.secrets-bridge.io "db-password" is forbidden: ValidatingAdmissionPolicy 'secrets-bridge-requester-binding' with binding 'secrets-bridge-requester-binding' denied request: spec.requester must be your own user name ("mallory"), not "alice""#
    );
    assert_eq!((d.code, d.reason.as_str()), (403, "Forbidden"));
}

#[test]
fn shipped_roles_and_policy_together_let_a_bound_approver_approve() {
    use kts_policy::rbac::{RbacSnapshot, authorize};
    let cluster_roles = docs("charts/secrets-bridge/files/rbac-roles.yaml");
    let snapshot = RbacSnapshot {
        cluster_roles,
        role_bindings: vec![json!({
            "metadata": {"name": "approvers", "namespace": "team-a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secrets-bridge-approver"},
            "subjects": [{"kind": "Group", "name": "team-a-approvers"}]
        })],
        ..Default::default()
    };
    let (p, b) = policies();
    let mut req = update_status("erin", with_status(vec![]), with_status(vec![approval("erin")]));
    let check = |a: &Attributes| authorize(&snapshot, a).allowed();
    // erin may write status (RBAC) but lacks `approve` until she is in the group.
    let status_write = Attributes {
        user: req.user.clone(),
        verb: "update".into(),
        api_group: "secrets-bridge.io".into(),
        resource: "secretreadrequests".into(),
        subresource: "status".into(),
        namespace: "team-a".into(),
        name: "db-password".into(),
        non_resource_path: None,
    };
    assert!(!check(&status_write));
    assert!(evaluate(&p, &b, &req, &check).is_err());
    req.user.groups.push("team-a-approvers".into());
    let status_write = Attributes { user: req.user.clone(), ..status_write };
    assert!(check(&status_write));
    assert_eq!(evaluate(&p, &b, &req, &check), Ok(()));
}
