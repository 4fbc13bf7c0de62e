use super::{AdmissionDenial, AdmissionRequest, evaluate, evaluate_with_warnings, validate_policy};
use crate::{Attributes, UserInfo};
use serde::Deserialize;
use serde_json::{Value, json};
use std::cell::RefCell;

const OPERATOR: &str = "system:serviceaccount:secrets-bridge:operator";

/// (policies, bindings) from a multi-document YAML fixture.
fn fixture(yaml: &str) -> (Vec<Value>, Vec<Value>) {
    let docs: Vec<Value> =
        serde_yaml::Deserializer::from_str(yaml).map(|d| Value::deserialize(d).expect("fixture parses")).collect();
    docs.into_iter().partition(|d| d["kind"] == "ValidatingAdmissionPolicy")
}

fn approvals() -> (Vec<Value>, Vec<Value>) {
    fixture(include_str!("../../tests/fixtures/approval-policy.yaml"))
}

fn requester() -> (Vec<Value>, Vec<Value>) {
    fixture(include_str!("../../tests/fixtures/requester-policy.yaml"))
}

fn user(name: &str) -> UserInfo {
    UserInfo { username: name.into(), uid: format!("uid-{name}"), groups: vec!["system:authenticated".into()] }
}

fn srr(approvals: Value) -> Value {
    json!({
        "apiVersion": "secrets-bridge.io/v1alpha1", "kind": "SecretReadRequest",
        "metadata": {"name": "req-1", "namespace": "team-a"},
        "spec": {"requester": "alice", "secret": "db"},
        "status": {"approvals": approvals}
    })
}

fn status_update(who: &str, old: Value, new: Value) -> AdmissionRequest {
    AdmissionRequest {
        operation: "UPDATE".into(),
        api_group: "secrets-bridge.io".into(),
        api_version: "v1alpha1".into(),
        kind: "SecretReadRequest".into(),
        resource: "secretreadrequests".into(),
        sub_resource: "status".into(),
        name: "req-1".into(),
        namespace: "team-a".into(),
        user: user(who),
        object: Some(new),
        old_object: Some(old),
        namespace_object: Some(
            json!({"metadata": {"name": "team-a", "labels": {"secrets-bridge.io/enabled": "true"}}}),
        ),
        dry_run: false,
    }
}

/// Only bob and carol may approve, and only req-1.
fn rbac(a: &Attributes) -> bool {
    a.verb == "approve"
        && a.api_group == "secrets-bridge.io"
        && a.resource == "secretreadrequests"
        && a.namespace == "team-a"
        && a.name == "req-1"
        && ["bob", "carol", "alice"].contains(&a.user.username.as_str())
}

fn denial(code: u16, reason: &str, policy: &str, binding: &str, msg: &str) -> AdmissionDenial {
    AdmissionDenial {
        code,
        reason: reason.into(),
        message: format!(
            "secretreadrequests.secrets-bridge.io \"req-1\" is forbidden: ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {msg}"
        ),
    }
}

fn approval_denial(code: u16, reason: &str, msg: &str) -> AdmissionDenial {
    denial(code, reason, "secretreadrequest-approvals", "secretreadrequest-approvals", msg)
}

#[test]
fn an_authorized_approver_may_append_their_own_approval() {
    let (p, b) = approvals();
    let old = srr(json!([{"approver": "carol"}]));
    let new = srr(json!([{"approver": "carol"}, {"approver": "bob"}]));
    let checks = RefCell::new(Vec::new());
    let authorize = |a: &Attributes| {
        checks.borrow_mut().push(a.clone());
        rbac(a)
    };
    assert_eq!(evaluate(&p, &b, &status_update("bob", old, new), &authorize), Ok(()));
    // The authorizer was asked about exactly this request, as the requesting user.
    let checks = checks.borrow();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].user.username, "bob");
    assert_eq!((checks[0].verb.as_str(), checks[0].name.as_str()), ("approve", "req-1"));
}

#[test]
fn approving_in_someone_elses_name_is_forbidden() {
    let (p, b) = approvals();
    let req = status_update("bob", srr(json!([])), srr(json!([{"approver": "carol"}])));
    let d = evaluate(&p, &b, &req, &rbac).unwrap_err();
    assert_eq!(d, approval_denial(403, "Forbidden", "the approver must be the requesting user"));
    assert_eq!(
        d.cause(),
        "ValidatingAdmissionPolicy 'secretreadrequest-approvals' with binding 'secretreadrequest-approvals' denied request: the approver must be the requesting user"
    );
}

#[test]
fn a_requester_cannot_approve_their_own_request() {
    let (p, b) = approvals();
    let req = status_update("alice", srr(json!([])), srr(json!([{"approver": "alice"}])));
    assert_eq!(
        evaluate(&p, &b, &req, &rbac),
        Err(approval_denial(403, "Forbidden", "a requester cannot approve their own request"))
    );
}

#[test]
fn a_user_without_the_approve_verb_is_refused_with_the_message_expression() {
    let (p, b) = approvals();
    let req = status_update("dave", srr(json!([])), srr(json!([{"approver": "dave"}])));
    assert_eq!(
        evaluate(&p, &b, &req, &rbac),
        Err(approval_denial(403, "Forbidden", "user dave may not approve req-1"))
    );
}

#[test]
fn rewriting_or_appending_several_approvals_is_invalid() {
    let (p, b) = approvals();
    let msg = "status.approvals may only change by appending exactly one approval";
    let two = status_update("bob", srr(json!([])), srr(json!([{"approver": "bob"}, {"approver": "carol"}])));
    assert_eq!(evaluate(&p, &b, &two, &rbac), Err(approval_denial(422, "Invalid", msg)));
    let rewrite = status_update(
        "bob",
        srr(json!([{"approver": "carol"}])),
        srr(json!([{"approver": "bob"}, {"approver": "bob"}])),
    );
    assert_eq!(evaluate(&p, &b, &rewrite, &rbac), Err(approval_denial(422, "Invalid", msg)));
}

#[test]
fn the_operator_is_exempt_through_the_match_condition() {
    let (p, b) = approvals();
    let req = status_update(OPERATOR, srr(json!([{"approver": "carol"}])), srr(json!([])));
    assert_eq!(evaluate(&p, &b, &req, &|_| false), Ok(()));
}

#[test]
fn the_main_resource_and_other_operations_do_not_match_the_status_rule() {
    let (p, b) = approvals();
    let mut req = status_update("mallory", srr(json!([])), srr(json!([{"approver": "x"}, {"approver": "y"}])));
    req.sub_resource.clear();
    assert_eq!(evaluate(&p, &b, &req, &|_| false), Ok(()));
    let mut del = status_update("mallory", srr(json!([])), srr(json!([])));
    del.operation = "DELETE".into();
    assert_eq!(evaluate(&p, &b, &del, &|_| false), Ok(()));
}

fn create(who: &str, requester: &str, namespace_labels: Value) -> AdmissionRequest {
    let mut obj = srr(json!([]));
    obj["spec"]["requester"] = json!(requester);
    AdmissionRequest {
        operation: "CREATE".into(),
        sub_resource: String::new(),
        object: Some(obj),
        old_object: None,
        namespace_object: Some(json!({"metadata": {"name": "team-a", "labels": namespace_labels}})),
        ..status_update(who, Value::Null, Value::Null)
    }
}

#[test]
fn on_create_the_requester_must_be_the_requesting_user() {
    let (p, b) = requester();
    let enabled = json!({"secrets-bridge.io/enabled": "true"});
    assert_eq!(evaluate(&p, &b, &create("alice", "alice", enabled.clone()), &|_| false), Ok(()));
    assert_eq!(
        evaluate(&p, &b, &create("mallory", "alice", enabled), &|_| false),
        Err(denial(
            422,
            "Invalid",
            "secretreadrequest-requester",
            "secretreadrequest-requester-binding",
            "failed expression: object.spec.requester == request.userInfo.username"
        ))
    );
}

#[test]
fn the_binding_namespace_selector_limits_where_the_policy_applies() {
    let (p, b) = requester();
    assert_eq!(evaluate(&p, &b, &create("mallory", "alice", json!({})), &|_| false), Ok(()));
    assert_eq!(
        evaluate(&p, &b, &create("mallory", "alice", json!({"secrets-bridge.io/enabled": "no"})), &|_| false),
        Ok(())
    );
    // A policy without its binding does nothing.
    assert_eq!(
        evaluate(&p, &[], &create("mallory", "alice", json!({"secrets-bridge.io/enabled": "true"})), &|_| false),
        Ok(())
    );
}

fn policy(spec: Value) -> Vec<Value> {
    vec![json!({"metadata": {"name": "p"}, "spec": spec})]
}

fn binding(actions: Value) -> Vec<Value> {
    vec![json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": actions}})]
}

fn any_srr_rule() -> Value {
    json!({"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["secretreadrequests", "secretreadrequests/*"]}]})
}

#[test]
fn evaluation_errors_follow_the_failure_policy() {
    let req = status_update("bob", srr(json!([])), srr(json!([])));
    let spec = json!({"matchConstraints": any_srr_rule(), "validations": [{"expression": "object.spec.missing == 1"}]});
    assert_eq!(
        evaluate(&policy(spec.clone()), &binding(json!(["Deny"])), &req, &|_| true),
        Err(denial(
            422,
            "Invalid",
            "p",
            "b",
            "expression 'object.spec.missing == 1' resulted in error: no such key: missing"
        ))
    );
    let mut ignore = spec;
    ignore["failurePolicy"] = json!("Ignore");
    assert_eq!(evaluate(&policy(ignore), &binding(json!(["Deny"])), &req, &|_| true), Ok(()));
}

#[test]
fn warn_action_warns_without_denying() {
    let req = status_update("bob", srr(json!([])), srr(json!([])));
    let spec = json!({"matchConstraints": any_srr_rule(), "validations": [{"expression": "false", "message": "nope"}]});
    let out = evaluate_with_warnings(&policy(spec), &binding(json!(["Warn"])), &req, &|_| true);
    assert_eq!(out.denial, None);
    assert_eq!(out.warnings, vec!["Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': nope"]);
}

#[test]
fn authorizer_paths_service_accounts_and_request_resource() {
    let req = status_update("bob", srr(json!([])), srr(json!([])));
    let seen = RefCell::new(Vec::new());
    let authorize = |a: &Attributes| {
        seen.borrow_mut().push(a.clone());
        a.non_resource_path.as_deref() == Some("/healthz")
            || a.user.groups.contains(&"system:serviceaccounts:ops".into())
    };
    let spec = json!({"matchConstraints": any_srr_rule(), "validations": [
        {"expression": "authorizer.path('/healthz').check('get').allowed()"},
        {"expression": "authorizer.serviceAccount('ops', 'bot').group('').resource('pods').check('list').allowed()"},
        {"expression": "!authorizer.requestResource.check('update').allowed()"},
        {"expression": "!authorizer.group('apps').resource('deployments').subresource('scale').namespace('x').check('patch').allowed()"}
    ]});
    assert_eq!(evaluate(&policy(spec), &binding(json!(["Deny"])), &req, &authorize), Ok(()));
    let seen = seen.borrow();
    assert_eq!(seen[1].user.username, "system:serviceaccount:ops:bot");
    assert_eq!(
        (seen[2].resource.as_str(), seen[2].subresource.as_str(), seen[2].name.as_str()),
        ("secretreadrequests", "status", "req-1")
    );
    assert_eq!((seen[3].subresource.as_str(), seen[3].namespace.as_str()), ("scale", "x"));
}

#[test]
fn object_selector_and_exclusions() {
    let mut req = status_update("bob", srr(json!([])), srr(json!([])));
    let deny = json!([{"expression": "false"}]);
    let selected =
        json!({"resourceRules": any_srr_rule()["resourceRules"], "objectSelector": {"matchLabels": {"tier": "gold"}}});
    assert_eq!(
        evaluate(
            &policy(json!({"matchConstraints": selected, "validations": deny})),
            &binding(json!(["Deny"])),
            &req,
            &|_| true
        ),
        Ok(())
    );
    req.object.as_mut().unwrap()["metadata"]["labels"] = json!({"tier": "gold"});
    assert!(
        evaluate(
            &policy(json!({"matchConstraints": selected, "validations": deny})),
            &binding(json!(["Deny"])),
            &req,
            &|_| true
        )
        .is_err()
    );
    let mut excluded = any_srr_rule();
    excluded["excludeResourceRules"] =
        json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["*/status"]}]);
    assert_eq!(
        evaluate(
            &policy(json!({"matchConstraints": excluded, "validations": deny})),
            &binding(json!(["Deny"])),
            &req,
            &|_| true
        ),
        Ok(())
    );
}

#[test]
fn policies_with_unparsable_expressions_are_reported() {
    let p = json!({"spec": {"validations": [{"expression": "object.spec =="}]}});
    let errs = validate_policy(&p);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.validations[0].expression");
    let (good, _) = approvals();
    assert!(validate_policy(&good[0]).is_empty());
}
