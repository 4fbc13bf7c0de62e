//! Defence in depth: the agent refuses references outside its configured prefixes even when
//! the operator hands them out.

/// A job reference outside the agent's scope.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScopeError(pub String);

/// Allowed reference prefixes of one provider.
#[derive(Debug, Clone)]
pub struct Scope {
    prefixes: Vec<String>,
}

impl Scope {
    /// `""` in `prefixes` allows every reference.
    pub fn new(prefixes: Vec<String>) -> Self {
        Self { prefixes }
    }

    /// The configured prefixes.
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Accepts `reference` when it is well formed and starts with an allowed prefix.
    pub fn check(&self, reference: &str) -> Result<(), ScopeError> {
        check_shape(reference)?;
        if self.prefixes.iter().any(|p| reference.starts_with(p.as_str())) {
            Ok(())
        } else {
            Err(ScopeError(format!(
                "reference {reference:?} is outside this agent's allowed prefixes {:?}",
                self.prefixes
            )))
        }
    }

    /// The prefixes to list for a discovery under `wanted` (every allowed prefix when `None`):
    /// the narrower of `wanted` and each allowed prefix they overlap with.
    pub fn listing_prefixes(&self, wanted: Option<&str>) -> Result<Vec<String>, ScopeError> {
        let wanted = wanted.unwrap_or("");
        check_shape(wanted)?;
        let mut out: Vec<String> = Vec::new();
        for allowed in &self.prefixes {
            let narrower = if wanted.starts_with(allowed.as_str()) {
                wanted
            } else if allowed.starts_with(wanted) {
                allowed.as_str()
            } else {
                continue;
            };
            if !out.iter().any(|p| narrower.starts_with(p.as_str())) {
                out.retain(|p| !p.starts_with(narrower));
                out.push(narrower.to_owned());
            }
        }
        if out.is_empty() {
            return Err(ScopeError(format!(
                "path prefix {wanted:?} is outside this agent's allowed prefixes {:?}",
                self.prefixes
            )));
        }
        out.sort();
        Ok(out)
    }
}

/// Refuses references a prefix check cannot reason about: `..` segments, empty segments,
/// a leading slash or control characters could make a provider resolve another path.
fn check_shape(reference: &str) -> Result<(), ScopeError> {
    let bad = reference.starts_with('/')
        || reference.contains("//")
        || reference.split('/').any(|seg| seg == ".." || seg == ".")
        || reference.chars().any(char::is_control);
    if bad {
        return Err(ScopeError(format!("reference {reference:?} is not a plain path")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_traversal_checks() {
        let scope = Scope::new(vec!["team-a/".into()]);
        assert!(scope.check("team-a/db").is_ok());
        assert!(scope.check("team-b/db").is_err());
        assert!(scope.check("team-a/../team-b/db").is_err());
        assert!(Scope::new(vec![String::new()]).check("anything/x").is_ok());
    }

    #[test]
    fn discovery_is_narrowed_to_the_scope() {
        let scope = Scope::new(vec!["team-a/".into(), "team-b/".into()]);
        assert_eq!(scope.listing_prefixes(None).unwrap(), vec!["team-a/", "team-b/"]);
        assert_eq!(scope.listing_prefixes(Some("team-a/x")).unwrap(), vec!["team-a/x"]);
        assert_eq!(scope.listing_prefixes(Some("team")).unwrap(), vec!["team-a/", "team-b/"]);
        assert!(scope.listing_prefixes(Some("team-c/")).is_err());
    }
}
