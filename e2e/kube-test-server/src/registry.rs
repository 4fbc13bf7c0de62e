//! The resource types the server serves: a fixed table of built-ins plus one entry per stored
//! CustomResourceDefinition (rebuilt from the CRD object on every CRD write).

use kts_policy::schema::CrdSchema;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How `metadata.name` is validated for a type, as in the real apiserver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    DnsSubdomain,
    DnsLabel,
    /// RBAC objects: any path segment (so `system:discovery` is a valid ClusterRole name).
    PathSegment,
}

/// One served version of a custom resource.
#[derive(Clone)]
pub struct CrdVersion {
    pub name: String,
    pub schema: Option<Arc<CrdSchema>>,
    pub raw_schema: Value,
    pub columns: Vec<Value>,
    pub status_subresource: bool,
    /// `selectableFields` JSON paths (field selectors beyond metadata.name/namespace).
    pub selectable: Vec<String>,
}

#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (spec-bearing types).
    pub generation: bool,
    pub name_rule: NameRule,
    /// Create-only virtual resources (access reviews): answered, never stored.
    pub virtual_review: bool,
    /// Set for custom resources: per-version schema, printer columns, subresources.
    pub crd: Option<BTreeMap<String, CrdVersion>>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            versions: vec![version.into()],
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            generation: false,
            name_rule: NameRule::DnsSubdomain,
            virtual_review: false,
            crd: None,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    fn with_generation(mut self) -> Self {
        self.generation = true;
        self
    }

    fn names(mut self, rule: NameRule) -> Self {
        self.name_rule = rule;
        self
    }

    fn review(mut self) -> Self {
        self.virtual_review = true;
        self
    }

    /// Group under which objects are stored (events.k8s.io Events live with core Events).
    pub fn store_group(&self) -> &str {
        if crate::events::is_events_v1(&self.group, &self.plural) { "" } else { &self.group }
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{}", self.group, version) }
    }

    pub fn crd_version(&self, version: &str) -> Option<&CrdVersion> {
        self.crd.as_ref().and_then(|m| m.get(version))
    }

    /// Whether `/status` exists for this version.
    pub fn has_status(&self, version: &str) -> bool {
        match self.crd_version(version) {
            Some(v) => v.status_subresource,
            None => self.status_subresource,
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.virtual_review {
            vec!["create"]
        } else {
            vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        }
    }
}

/// Built-in kinds stored loosely (no schema), as listed in the server's README.
pub fn builtins() -> Vec<ResourceType> {
    use NameRule::*;
    let rbac = "rbac.authorization.k8s.io";
    vec![
        ResourceType::builtin("", "v1", "Namespace", "namespaces", false).short(&["ns"]).with_status().names(DnsLabel),
        ResourceType::builtin("", "v1", "Secret", "secrets", true),
        ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        ResourceType::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        ResourceType::builtin(rbac, "v1", "Role", "roles", true).names(PathSegment),
        ResourceType::builtin(rbac, "v1", "ClusterRole", "clusterroles", false).names(PathSegment),
        ResourceType::builtin(rbac, "v1", "RoleBinding", "rolebindings", true).names(PathSegment),
        ResourceType::builtin(rbac, "v1", "ClusterRoleBinding", "clusterrolebindings", false).names(PathSegment),
        ResourceType::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .short(&["crd", "crds"])
        .with_status()
        .with_generation(),
        ResourceType::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
        )
        .with_status()
        .with_generation(),
        ResourceType::builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
        )
        .with_generation(),
        ResourceType::builtin("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", false)
            .review(),
        ResourceType::builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .review(),
        ResourceType::builtin("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false)
            .review(),
        ResourceType::builtin(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        )
        .review(),
        ResourceType::builtin("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false).review(),
    ]
}

/// Built-ins plus CRD-registered types, looked up by group/version/plural.
#[derive(Clone, Default)]
pub struct Registry {
    pub builtins: Vec<ResourceType>,
    /// Keyed by CRD name (`<plural>.<group>`).
    pub custom: BTreeMap<String, ResourceType>,
}

impl Registry {
    pub fn new() -> Self {
        Self { builtins: builtins(), custom: BTreeMap::new() }
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtins.iter().chain(self.custom.values())
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.all().find(|t| t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version))
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.all().find(|t| t.group == group && t.kind == kind)
    }

    /// Every (group, version) served, for discovery and OpenAPI.
    pub fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.all() {
            let e = out.entry(t.group.clone()).or_default();
            for v in &t.versions {
                if !e.contains(v) {
                    e.push(v.clone());
                }
            }
        }
        out
    }
}
