//! ValidatingAdmissionPolicy: a field bound to `request.userInfo.username` rejects a forged
//! value and accepts the honest one; `authorizer` checks on a subresource follow RBAC.

mod common;
use common::*;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

const POLICY: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: owner-is-caller}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [example.com]
      apiVersions: ["*"]
      operations: [CREATE]
      resources: [gadgets]
  validations:
  - expression: "object.spec.owner == request.userInfo.username"
    message: "spec.owner must be the requesting user"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: owner-is-caller}
spec:
  policyName: owner-is-caller
  validationActions: [Deny]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: status-needs-approve}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [example.com]
      apiVersions: ["*"]
      operations: [UPDATE]
      resources: [gadgets/status]
  validations:
  - expression: "authorizer.group('example.com').resource('gadgets').namespace(object.metadata.namespace).name(object.metadata.name).check('approve').allowed()"
    message: "only approvers may write gadget status"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: status-needs-approve}
spec:
  policyName: status-needs-approve
  validationActions: [Deny]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gadget-user}
rules:
- apiGroups: [example.com]
  resources: [gadgets, gadgets/status]
  verbs: [get, list, create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gadget-users}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gadget-user}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gadget-approver, namespace: default}
rules:
- apiGroups: [example.com]
  resources: [gadgets]
  verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-approves, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gadget-approver}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
"#;

fn gadgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    }
}

fn gadget(name: &str, owner: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": name}, "spec": {"owner": owner}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_policy_binds_a_field_to_the_requesting_user() {
    let s = server().await;
    s.apply_yaml_as_admin(GADGET_CRD).await.unwrap();
    s.apply_yaml_as_admin(POLICY).await.unwrap();
    let alice: Api<DynamicObject> = Api::namespaced_with(s.client_as("alice").await.unwrap(), "default", &gadgets());
    let (code, _, msg) = api_error(alice.create(&PostParams::default(), &gadget("forged", "bob")).await);
    assert!(code == 403 || code == 422, "denied, got {code}: {msg}");
    assert!(msg.contains("spec.owner must be the requesting user"), "{msg}");
    assert!(msg.contains("owner-is-caller"), "names the policy: {msg}");
    alice.create(&PostParams::default(), &gadget("honest", "alice")).await.expect("honest value admitted");

    // The same check through kubectl, as bob.
    let forged =
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: k, namespace: default}\nspec: {owner: alice}\n";
    let out = kubectl_stdin(&s, "bob", &["create", "-f", "-"], forged);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.owner must be the requesting user"), "{err}");

    // Status writes need `approve` (an authorizer check answered by RBAC): bob has it.
    let status = json!({"status": {"phase": "Approved"}});
    let (code, _, msg) = api_error(alice.patch_status("honest", &PatchParams::default(), &Patch::Merge(&status)).await);
    assert!(code == 403 || code == 422, "{code}: {msg}");
    assert!(msg.contains("only approvers may write gadget status"), "{msg}");
    let bob: Api<DynamicObject> = Api::namespaced_with(s.client_as("bob").await.unwrap(), "default", &gadgets());
    let ok = bob.patch_status("honest", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    assert_eq!(ok.data["status"]["phase"], "Approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn product_crds_apply_and_are_established() {
    let s = server().await;
    let crds = product_crds();
    assert!(!crds.is_empty(), "product CRDs missing under crds/");
    for crd in &crds {
        kubectl_ok(&s, "admin", &["apply", "-f", crd.to_str().unwrap()]);
    }
    let names = kubectl_ok(&s, "admin", &["get", "crd", "-o", "name"]);
    for crd in &crds {
        let name = crd.file_stem().unwrap().to_str().unwrap();
        assert!(names.contains(name), "{name} missing from {names}");
        kubectl_ok(&s, "admin", &["wait", "--for=condition=Established", &format!("crd/{name}"), "--timeout=10s"]);
    }
    let out = kubectl_ok(&s, "admin", &["get", "secretreadrequests", "-A"]);
    assert!(out.is_empty() || out.contains("No resources"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn warn_bindings_answer_with_warning_headers_and_admit() {
    let s = server().await;
    s.apply_yaml_as_admin(GADGET_CRD).await.unwrap();
    s.apply_yaml_as_admin(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: owner-set}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [example.com], apiVersions: ["*"], operations: [CREATE], resources: [gadgets]}
  validations:
  - {expression: "object.spec.owner != 'nobody'", message: "owner should be a person"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: owner-set-warn}
spec: {policyName: owner-set, validationActions: [Warn]}
"#,
    )
    .await
    .unwrap();
    let out = kubectl_stdin(
        &s,
        "admin",
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {owner: nobody}\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Warning:") && err.contains("owner should be a person"), "{err}");

    // A policy whose expression does not compile is refused at write time.
    let bad = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: broken}\nspec:\n  validations:\n  - {expression: \"object.spec.(\"}\n";
    let out = kubectl_stdin(&s, "admin", &["apply", "-f", "-"], bad);
    assert!(!out.status.success(), "uncompilable policy accepted");
}
