//! `metav1.LabelSelector` matching (matchLabels + matchExpressions), used by admission
//! namespace/object selectors and ClusterRole aggregation.

use serde_json::Value;

/// Whether `labels` (an object of string → string, or null) satisfy `selector`.
/// A missing or empty selector matches everything, as in the real API.
pub fn matches(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    for expr in exprs.into_iter().flatten() {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let actual = label(key);
        let ok = match expr.get("operator").and_then(Value::as_str).unwrap_or_default() {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            // An unknown operator makes the selector invalid; the real API rejects it on
            // write, so nothing should match rather than everything.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;
    use serde_json::json;

    #[test]
    fn empty_selector_matches_everything() {
        assert!(matches(None, None));
        assert!(matches(Some(&json!({})), Some(&json!({"a": "b"}))));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        });
        assert!(matches(Some(&sel), Some(&json!({"team": "a", "env": "prod"}))));
        assert!(!matches(Some(&sel), Some(&json!({"team": "b", "env": "prod"}))));
        assert!(!matches(Some(&sel), Some(&json!({"team": "a", "env": "dev"}))));
        assert!(!matches(Some(&sel), Some(&json!({"team": "a", "env": "prod", "legacy": "y"}))));
        let not_in = json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]});
        assert!(matches(Some(&not_in), None));
        assert!(!matches(Some(&not_in), Some(&json!({"env": "prod"}))));
    }
}
