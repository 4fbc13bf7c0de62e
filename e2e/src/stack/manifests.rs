//! The users, namespace, bindings and AgentRegistration every stack starts with.

/// The namespace people work in.
pub const NAMESPACE: &str = "team-a";

/// alice and carol are developers (requesters), bob approves, admin is cluster-admin (the
/// operator runs as the chart's ServiceAccount).
pub const USERS: &[(&str, &[&str])] =
    &[("alice", &["developers"]), ("bob", &["approvers"]), ("carol", &["developers"])];

/// team-a with the shipped roles bound: developers request, bob approves (by user name,
/// because the operator's SubjectAccessReview knows the approver's name only), everybody may
/// read the agents' published sealing keys; and `edge`, registered by the public key
/// `auth_key` its identity printed, serving `vault` and `aws` under `prefix` only, which
/// namespace team-a may target (a tenants rule).
pub fn setup_yaml(prefix: &str, auth_key: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: team-a}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: requesters, namespace: team-a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-requester}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: approvers, namespace: team-a}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-approver}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: agent-readers}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-agent-reader}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}}
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: approvers}}
---
apiVersion: secrets-bridge.io/v1alpha1
kind: AgentRegistration
metadata: {{name: edge}}
spec:
  description: the real sb-agent, serving OpenBao dev and moto
  heartbeatIntervalSeconds: 5
  authKeys: [{{publicKey: "{auth_key}"}}]
  providers:
    - name: vault
      type: Vault
      scope: {{allowedPrefixes: ["{prefix}"], tenants: [{{namespaces: [team-a], prefixes: ["{prefix}"]}}]}}
    - name: aws
      type: AwsSecretsManager
      scope: {{allowedPrefixes: ["{prefix}"], tenants: [{{namespaces: [team-a], prefixes: ["{prefix}"]}}]}}
"#
    )
}
