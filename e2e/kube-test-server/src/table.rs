//! `meta.k8s.io/v1` Table output for kubectl: CRD `additionalPrinterColumns` evaluated with a
//! small JSONPath subset (`.a.b`, `[0]`, `[*]`, `[?(@.type=="Ready")]`), plus the columns the
//! real server prints for a few built-ins.

use crate::server::ResourceReq;
use serde_json::{Value, json};

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, String),
}

fn parse(path: &str) -> Vec<Step> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => i += 1,
            '[' => {
                let mut depth = 0;
                let start = i + 1;
                while i < chars.len() {
                    match chars[i] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let inner: String = chars[start..i.min(chars.len())].iter().collect();
                i += 1;
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(n) = inner.parse() {
                    steps.push(Step::Index(n));
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    if let Some((lhs, rhs)) = f.split_once("==") {
                        let path = lhs.trim().trim_start_matches('@').trim_start_matches('.');
                        let lit = rhs.trim().trim_matches('"').trim_matches('\'');
                        steps.push(Step::Filter(path.split('.').map(String::from).collect(), lit.into()));
                    }
                } else {
                    steps.push(Step::Field(inner.trim_matches('\'').trim_matches('"').into()));
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    steps
}

/// All values `path` selects in `obj`.
pub fn eval(path: &str, obj: &Value) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    for step in parse(path) {
        let mut next = Vec::new();
        for v in cur {
            match &step {
                Step::Field(f) => next.extend(v.get(f.as_str()).cloned()),
                Step::Index(n) => next.extend(v.get(*n).cloned()),
                Step::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(o) => next.extend(o.into_iter().map(|(_, v)| v)),
                    _ => {}
                },
                Step::Filter(p, lit) => {
                    for item in v.as_array().cloned().unwrap_or_default() {
                        let mut x = Some(&item);
                        for seg in p {
                            x = x.and_then(|x| x.get(seg.as_str()));
                        }
                        let hit = match x {
                            Some(Value::String(s)) => s == lit,
                            Some(other) => lit.as_str() == other.to_string().as_str(),
                            None => false,
                        };
                        if hit {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// `kubectl`'s humanized age (`5s`, `3m12s`, `2h`, `4d`).
pub fn human_age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<invalid>".into();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ => format!("{d}d"),
    }
}

struct Column {
    name: String,
    ty: String,
    format: String,
    description: String,
    priority: i64,
    path: String,
}

fn columns(rr: &ResourceReq) -> Vec<Column> {
    let col = |name: &str, ty: &str, path: &str| Column {
        name: name.into(),
        ty: ty.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        path: path.into(),
    };
    if let Some(v) = rr.rt.crd_version(&rr.version) {
        if v.columns.is_empty() {
            return vec![col("Age", "date", ".metadata.creationTimestamp")];
        }
        return v
            .columns
            .iter()
            .map(|c| Column {
                name: c["name"].as_str().unwrap_or("").into(),
                ty: c["type"].as_str().unwrap_or("string").into(),
                format: c["format"].as_str().unwrap_or("").into(),
                description: c["description"].as_str().unwrap_or("").into(),
                priority: c["priority"].as_i64().unwrap_or(0),
                path: c["jsonPath"].as_str().unwrap_or("").into(),
            })
            .collect();
    }
    let created_at = col("Created At", "string", ".metadata.creationTimestamp");
    let mut cols = match (rr.rt.group.as_str(), rr.rt.plural.as_str()) {
        ("", "secrets") => vec![col("Type", "string", ".type"), col("Data", "count", ".data")],
        ("", "configmaps") => vec![col("Data", "count", ".data")],
        ("", "namespaces") => vec![col("Status", "string", ".status.phase")],
        ("", "serviceaccounts") => vec![col("Secrets", "count", ".secrets")],
        ("coordination.k8s.io", "leases") => vec![col("Holder", "string", ".spec.holderIdentity")],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            vec![col("Role", "roleRef", ".roleRef")]
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            vec![col("Validations", "count", ".spec.validations"), col("ParamKind", "string", ".spec.paramKind.kind")]
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => {
            vec![col("PolicyName", "string", ".spec.policyName"), col("ParamRef", "string", ".spec.paramRef.name")]
        }
        // `kubectl get events`: LAST SEEN TYPE REASON OBJECT MESSAGE, no AGE.
        ("", "events") => {
            return vec![
                col("Last Seen", "eventAge", ".lastTimestamp"),
                col("Type", "string", ".type"),
                col("Reason", "string", ".reason"),
                col("Object", "objectRef", ".involvedObject"),
                col("Message", "string", ".message"),
            ];
        }
        ("events.k8s.io", "events") => {
            return vec![
                col("Last Seen", "eventAge", ".deprecatedLastTimestamp"),
                col("Type", "string", ".type"),
                col("Reason", "string", ".reason"),
                col("Object", "objectRef", ".regarding"),
                col("Message", "string", ".note"),
            ];
        }
        // The real server prints a raw creation time for these instead of an age.
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") | ("apiextensions.k8s.io", _) => {
            return vec![created_at];
        }
        _ => vec![],
    };
    cols.push(col("Age", "date", ".metadata.creationTimestamp"));
    cols
}

fn cell(c: &Column, obj: &Value) -> Value {
    let vals = eval(&c.path, obj);
    if c.ty == "eventAge" {
        // The newest of the series time, the last timestamp, the event time, creation.
        let when = [".series.lastObservedTime", &c.path, ".eventTime", ".metadata.creationTimestamp"]
            .iter()
            .find_map(|p| eval(p, obj).into_iter().find_map(|v| v.as_str().map(String::from)));
        return when.map_or(Value::Null, |t| json!(human_age(&t)));
    }
    match (c.ty.as_str(), vals.first()) {
        ("objectRef", Some(r)) => {
            let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
            return json!(format!("{kind}/{}", r["name"].as_str().unwrap_or("")));
        }
        ("count", Some(Value::Object(m))) => return json!(m.len()),
        ("count", Some(Value::Array(a))) => return json!(a.len()),
        ("count", _) => return json!(0),
        ("roleRef", Some(r)) => {
            return json!(format!("{}/{}", r["kind"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or("")));
        }
        _ => {}
    }
    let Some(first) = vals.first() else {
        return Value::Null;
    };
    match c.ty.as_str() {
        "date" => json!(human_age(first.as_str().unwrap_or(""))),
        "integer" | "number" | "boolean" if vals.len() == 1 => first.clone(),
        _ => json!(
            vals.iter()
                .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

pub fn convert(rr: &ResourceReq, items: &[Value], include: Option<&str>, rv: &str, cont: Option<String>) -> Value {
    let cols = columns(rr);
    // Events print their name only with `-o wide` (priority 1, last), like the real printer.
    let name_wide = rr.rt.plural == "events";
    let name_def = json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": i32::from(name_wide)});
    let mut defs = if name_wide { vec![] } else { vec![name_def.clone()] };
    for c in &cols {
        let ty = if matches!(c.ty.as_str(), "count" | "roleRef" | "objectRef" | "eventAge") {
            "string"
        } else {
            c.ty.as_str()
        };
        defs.push(json!({"name": c.name, "type": ty, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    if name_wide {
        defs.push(name_def);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let name = json!(crate::meta::name(obj));
            let mut cells = if name_wide { vec![] } else { vec![name.clone()] };
            cells.extend(cols.iter().map(|c| cell(c, obj)));
            if name_wide {
                cells.push(name);
            }
            let mut row = json!({"cells": cells});
            match include.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = obj.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
                }
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
           "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset_selects_condition_status_and_nested_fields() {
        let o = json!({"spec": {"a": {"b": 3}, "l": [{"n": "x"}, {"n": "y"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval(".spec.a.b", &o), vec![json!(3)]);
        assert_eq!(eval(".status.conditions[?(@.type==\"Ready\")].status", &o), vec![json!("True")]);
        assert_eq!(eval(".spec.l[*].n", &o), vec![json!("x"), json!("y")]);
        assert_eq!(eval(".spec.l[1].n", &o), vec![json!("y")]);
        assert!(eval(".spec.missing", &o).is_empty());
    }
}
