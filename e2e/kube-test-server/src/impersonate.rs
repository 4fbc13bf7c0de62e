//! `Impersonate-User` / `Impersonate-Group` / `Impersonate-Uid` headers (`kubectl --as`),
//! authorized with the `impersonate` verb like the real server.

use crate::auth;
use crate::status::{ApiError, Target};
use crate::store::Store;
use http::HeaderMap;
use kts_policy::{Attributes, UserInfo};

fn check(store: &Store, user: &UserInfo, group: &str, resource: &str, name: &str) -> Result<(), ApiError> {
    let attrs = Attributes {
        user: user.clone(),
        verb: "impersonate".into(),
        api_group: group.into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    };
    if auth::authorize(store, &attrs).allowed() {
        return Ok(());
    }
    let t = Target { group: group.into(), resource: resource.into(), name: name.into(), ..Default::default() };
    Err(ApiError::forbidden(&t, &auth::forbidden_reason(&attrs)))
}

/// The effective user of a request: the authenticated one, or whom it may impersonate.
pub fn effective_user(store: &Store, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let get_all = |k: &str| -> Vec<String> {
        headers.get_all(k).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
    };
    let Some(target) = get_all("impersonate-user").into_iter().next() else {
        if !get_all("impersonate-group").is_empty() {
            return Err(ApiError::internal("requested impersonation of groups without impersonating a user"));
        }
        return Ok(user);
    };
    let sa = target.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':'));
    // A service account may be impersonated via `serviceaccounts` in its namespace or as a user.
    match sa {
        Some((ns, name)) => {
            let attrs_ns = Attributes {
                user: user.clone(),
                verb: "impersonate".into(),
                resource: "serviceaccounts".into(),
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            };
            if !auth::authorize(store, &attrs_ns).allowed() {
                check(store, &user, "", "users", &target)?;
            }
        }
        None => check(store, &user, "", "users", &target)?,
    }
    let mut groups = get_all("impersonate-group");
    for g in &groups {
        check(store, &user, "", "groups", g)?;
    }
    let uid = get_all("impersonate-uid").into_iter().next().unwrap_or_default();
    if !uid.is_empty() {
        check(store, &user, "authentication.k8s.io", "uids", &uid)?;
    }
    if let Some((ns, _)) = sa {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(UserInfo { username: target, uid, groups })
}
