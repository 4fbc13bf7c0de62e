//! Label selectors (equality- and set-based) and field selectors for list and watch.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

fn split_top(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().expect("non-empty").push(c);
    }
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let err = || format!("unable to parse requirement: found '{part}', expected: valid selector");
            if let Some(k) = part.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(err());
                }
                reqs.push(Requirement { key: k.into(), op: Op::NotExists });
                continue;
            }
            let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
            if words.len() == 2 {
                let rest = words[1].trim();
                let (op, vals) = if let Some(r) = rest.strip_prefix("notin") {
                    ("notin", set_values(r))
                } else if let Some(r) = rest.strip_prefix("in") {
                    ("in", set_values(r))
                } else {
                    ("", None)
                };
                if let (Some(vals), true) = (vals, valid_key(words[0])) {
                    let op = if op == "in" { Op::In(vals) } else { Op::NotIn(vals) };
                    reqs.push(Requirement { key: words[0].into(), op });
                    continue;
                }
            }
            let compact: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            let req = if let Some((k, v)) = compact.split_once("!=") {
                Requirement { key: k.into(), op: Op::NotEq(v.into()) }
            } else if let Some((k, v)) = compact.split_once("==") {
                Requirement { key: k.into(), op: Op::Eq(v.into()) }
            } else if let Some((k, v)) = compact.split_once('=') {
                Requirement { key: k.into(), op: Op::Eq(v.into()) }
            } else if let Some((k, v)) = compact.split_once('>') {
                Requirement { key: k.into(), op: Op::Gt(v.parse().map_err(|_| err())?) }
            } else if let Some((k, v)) = compact.split_once('<') {
                Requirement { key: k.into(), op: Op::Lt(v.parse().map_err(|_| err())?) }
            } else if part.contains(char::is_whitespace) {
                return Err(err());
            } else {
                Requirement { key: compact.clone(), op: Op::Exists }
            };
            if !valid_key(&req.key) {
                return Err(err());
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => !v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Gt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
                Op::Lt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            }
        })
    }
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`, comma-separated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// `allowed` lists the selectable fields beyond `metadata.name`/`metadata.namespace`;
    /// `None` allows any field path (built-ins, stored loosely).
    pub fn parse(s: &str, allowed: Option<&[String]>) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            let k = k.trim();
            let known = k == "metadata.name"
                || k == "metadata.namespace"
                || allowed.is_none_or(|a| a.iter().any(|f| f.trim_start_matches('.') == k));
            if !known {
                return Err(format!("field label not supported: {k}"));
            }
            out.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(Self(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let ptr = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based_and_equality_selectors_match_like_kubernetes() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier!=back", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app in (db),tier", false),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&o), want, "{sel}");
        }
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selector_rejects_unknown_fields_for_custom_resources() {
        assert!(FieldSelector::parse("spec.x=1", Some(&[])).is_err());
        let s = FieldSelector::parse("metadata.name=a", Some(&[])).unwrap();
        assert!(s.matches(&json!({"metadata": {"name": "a"}})));
        assert!(!s.matches(&json!({"metadata": {"name": "b"}})));
    }
}
