//! `PolicyRule` matching, as `rbac.RuleAllows` and the `rbacv1helpers` matchers do it.

use crate::Attributes;
use serde_json::Value;

fn strings(rule: &Value, key: &str) -> Vec<String> {
    rule.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether one `PolicyRule` (as JSON) allows the request.
pub fn rule_allows(attrs: &Attributes, rule: &Value) -> bool {
    let verbs = strings(rule, "verbs");
    let verb_ok = verbs.iter().any(|v| v == "*" || *v == attrs.verb);
    if let Some(path) = &attrs.non_resource_path {
        return verb_ok && non_resource_url_matches(&strings(rule, "nonResourceURLs"), path);
    }
    let groups = strings(rule, "apiGroups");
    let group_ok = groups.iter().any(|g| g == "*" || *g == attrs.api_group);
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resource_ok = strings(rule, "resources").iter().any(|r| {
        r == "*"
            || *r == combined
            // `*/status` grants that subresource of every resource.
            || (!attrs.subresource.is_empty()
                && r.len() == attrs.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(&attrs.subresource))
    });
    let names = strings(rule, "resourceNames");
    // resourceNames can never match a request without a name (list, create, ...).
    let name_ok = names.is_empty() || names.contains(&attrs.name);
    verb_ok && group_ok && resource_ok && name_ok
}

fn non_resource_url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)))
}
