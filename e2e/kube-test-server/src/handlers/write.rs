//! create (POST) and update (PUT), and the write pipeline every mutation goes through:
//! strategy → field validation → schema → managedFields → admission → store.

use super::{for_version, parse_body, respond};
use crate::crd;
use crate::meta;
use crate::server::{App, Ctx, Inner, ResourceReq};
use crate::status::{ApiError, ApiResult};
use crate::store::Key;
use crate::strategy::{self, field_error};
use axum::response::Response;
use http::StatusCode;
use kts_policy::admission::AdmissionRequest;
use serde_json::{Value, json};
use std::sync::Arc;

/// Options of one write, from the query string.
pub struct WriteOpts {
    pub manager: String,
    pub field_validation: String,
    pub dry_run: bool,
    /// False for server-side apply, whose managedFields kts-patch already computed.
    pub record_managed: bool,
    /// PUT on custom resources needs a resourceVersion (no unconditional update).
    pub require_rv: bool,
}

impl WriteOpts {
    pub fn from_ctx(ctx: &Ctx) -> ApiResult<Self> {
        let fv = ctx.q("fieldValidation").unwrap_or("Warn").to_string();
        if !matches!(fv.as_str(), "Strict" | "Warn" | "Ignore") {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {fv}"
            )));
        }
        let manager = match ctx.q("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                // The real server derives the manager from the User-Agent's program name.
                let ua = ctx.header("user-agent");
                ua.split('/').next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_string()
            }
        };
        Ok(Self { manager, field_validation: fv, dry_run: ctx.dry_run(), record_managed: true, require_rv: false })
    }
}

pub struct Committed {
    pub object: Value,
    pub warnings: Vec<String>,
}

pub fn create(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let body = parse_body(ctx)?;
    let opts = WriteOpts::from_ctx(ctx)?;
    let mut inner = app.lock();
    let c = commit(app, &mut inner, ctx, rr, None, body, &opts)?;
    Ok(respond(StatusCode::CREATED, &for_version(c.object, rr), &c.warnings))
}

pub fn update(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let body = parse_body(ctx)?;
    let mut opts = WriteOpts::from_ctx(ctx)?;
    opts.require_rv = rr.rt.is_custom();
    let mut inner = app.lock();
    let key = key_of(rr, &rr.name);
    let old = inner.store.get(&key).cloned();
    let Some(old) = old else {
        return Err(ApiError::not_found(&rr.target(&rr.name)));
    };
    let c = commit(app, &mut inner, ctx, rr, Some(old), body, &opts)?;
    Ok(respond(StatusCode::OK, &for_version(c.object, rr), &c.warnings))
}

pub fn key_of(rr: &ResourceReq, name: &str) -> Key {
    let ns = if rr.rt.namespaced { rr.namespace.as_str() } else { "" };
    Key::new(rr.rt.store_group(), &rr.rt.plural, ns, name)
}

/// Common checks on the identity of the written object.
fn check_identity(rr: &ResourceReq, obj: &mut Value, creating: bool) -> ApiResult<()> {
    let Some(o) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object provided is unrecognized or malformed"));
    };
    let want = rr.rt.api_version(&rr.version);
    match o.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
        _ => {}
    }
    if let Some(k) = o.get("kind").and_then(Value::as_str)
        && k != rr.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rr.rt.kind
        )));
    }
    o.insert("apiVersion".into(), json!(want));
    o.insert("kind".into(), json!(rr.rt.kind));
    let m = meta::meta_mut(obj);
    if rr.rt.namespaced {
        match m.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != rr.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                m.insert("namespace".into(), json!(rr.namespace));
            }
        }
    } else {
        m.remove("namespace");
    }
    let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if creating {
        if name.is_empty()
            && let Some(g) = m.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty())
        {
            let generated = format!("{g}{}", meta::random_suffix());
            m.insert("name".into(), json!(generated));
        }
    } else if name.is_empty() {
        m.insert("name".into(), json!(rr.name));
    } else if name != rr.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            rr.name
        )));
    }
    Ok(())
}

/// Runs the whole write pipeline on `new` (the complete desired object) and stores it.
pub fn commit(
    app: &App,
    inner: &mut Inner,
    ctx: &Ctx,
    rr: &ResourceReq,
    old: Option<Value>,
    mut new: Value,
    opts: &WriteOpts,
) -> ApiResult<Committed> {
    // Work in the request's representation; convert to the storage form only to store.
    let old = old.map(|o| super::for_version(o, rr));
    let creating = old.is_none();
    check_identity(rr, &mut new, creating)?;
    crate::builtin::check_base64(rr, &new)?;
    let name = meta::name(&new).to_string();
    let target = rr.target(&name);
    if creating && rr.rt.namespaced {
        check_namespace_open(inner, rr)?;
    }
    let mut warnings = Vec::new();
    let unknown = strategy::prune_unknown(rr, &mut new);
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect();
        match opts.field_validation.as_str() {
            "Strict" => {
                return Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.join(", "))));
            }
            "Warn" => warnings.extend(msgs),
            _ => {}
        }
    }
    match &old {
        None => {
            if inner.store.get(&key_of(rr, &name)).is_some() {
                return Err(ApiError::already_exists(&target));
            }
            strategy::prepare_create(rr, &mut new);
        }
        Some(old) => {
            let body_rv = meta::rv(&new).to_string();
            if body_rv.is_empty() && opts.require_rv {
                return Err(ApiError::invalid(
                    &target,
                    &[field_error(
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )],
                ));
            }
            if !body_rv.is_empty() && body_rv != meta::rv(old) {
                return Err(ApiError::stale(&target));
            }
            strategy::prepare_update(rr, old, &mut new);
        }
    }
    crate::builtin::apply_rules(rr, &mut new, creating);
    let mut errors = strategy::validate_meta(&rr.rt, &new, old.as_ref());
    errors.extend(crate::builtin::validate(rr, &new, old.as_ref()));
    if rr.rt.group == "apiextensions.k8s.io" {
        errors.extend(crd::prepare(&mut new, old.as_ref()));
    }
    if rr.rt.plural == "validatingadmissionpolicies" {
        errors.extend(kts_policy::admission::validate_policy(&new));
    }
    errors.extend(strategy::validate_custom(rr, &mut new, old.as_ref()));
    if !errors.is_empty() {
        return Err(ApiError::invalid(&target, &errors));
    }
    crate::escalation::check(&inner.store, rr, &ctx.user, &new)?;
    if opts.record_managed {
        let sub = (!rr.subresource.is_empty()).then_some(rr.subresource.as_str());
        let raw = rr.rt.crd_version(&rr.version).map(|v| &v.raw_schema);
        let lists = super::patch::SchemaLists(raw);
        kts_patch::managed::record_update_with(old.as_ref(), &mut new, &opts.manager, sub, &lists);
    }
    let op = if creating { "CREATE" } else { "UPDATE" };
    warnings.extend(admit(inner, ctx, rr, op, &name, Some(&new), old.as_ref(), opts.dry_run)?);
    if opts.dry_run {
        return Ok(Committed { object: new, warnings });
    }
    let key = key_of(rr, &name);
    if let Some(old) = &old
        && unchanged(old, &new)
    {
        // Like etcd3's GuaranteedUpdate: a no-op write keeps the resourceVersion and emits no
        // event (otherwise a controller re-applying the same status would loop forever).
        return Ok(Committed { object: old.clone(), warnings });
    }
    let object = if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() {
        super::delete_now(app, inner, &key).unwrap_or(new)
    } else {
        let stored = if crate::events::is_events_v1(&rr.rt.group, &rr.rt.plural) {
            inner.store.put(key, crate::events::to_core(new))
        } else {
            inner.store.put(key, new)
        };
        if rr.rt.group == "apiextensions.k8s.io" {
            crd::register(inner, &stored);
        }
        if rr.rt.plural == "clusterroles" {
            app.gc_wake.notify_one();
        }
        stored
    };
    Ok(Committed { object, warnings })
}

/// Equal apart from resourceVersion and managedFields timestamps (which the real server
/// also ignores when deciding whether a write changed anything).
fn unchanged(old: &Value, new: &Value) -> bool {
    let norm = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
                for e in mf {
                    if let Some(o) = e.as_object_mut() {
                        o.remove("time");
                    }
                }
            }
        }
        v
    };
    norm(old) == norm(new)
}

fn check_namespace_open(inner: &Inner, rr: &ResourceReq) -> ApiResult<()> {
    match inner.store.get(&Key::new("", "namespaces", "", &rr.namespace)) {
        None => Err(ApiError::not_found(&crate::status::Target {
            resource: "namespaces".into(),
            name: rr.namespace.clone(),
            ..Default::default()
        })),
        Some(ns) if meta::is_deleting(ns) => Err(ApiError::forbidden(
            &rr.target(""),
            &format!("unable to create new content in namespace {} because it is being terminated", rr.namespace),
        )),
        Some(_) => Ok(()),
    }
}

/// ValidatingAdmissionPolicy evaluation via kts-policy; `authorizer` checks use RBAC.
#[allow(clippy::too_many_arguments)]
pub fn admit(
    inner: &Inner,
    ctx: &Ctx,
    rr: &ResourceReq,
    operation: &str,
    name: &str,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> ApiResult<Vec<String>> {
    let g = "admissionregistration.k8s.io";
    let policies: Vec<Value> =
        inner.store.list(g, "validatingadmissionpolicies", None).map(|(_, v)| v.clone()).collect();
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let bindings: Vec<Value> =
        inner.store.list(g, "validatingadmissionpolicybindings", None).map(|(_, v)| v.clone()).collect();
    let namespace_object = (!rr.namespace.is_empty())
        .then(|| inner.store.get(&Key::new("", "namespaces", "", &rr.namespace)).cloned())
        .flatten();
    let request = AdmissionRequest {
        operation: operation.into(),
        api_group: rr.rt.group.clone(),
        api_version: rr.version.clone(),
        kind: rr.rt.kind.clone(),
        resource: rr.rt.plural.clone(),
        sub_resource: rr.subresource.clone(),
        name: name.into(),
        namespace: if rr.rt.namespaced { rr.namespace.clone() } else { String::new() },
        user: ctx.user.clone(),
        object: object.cloned(),
        old_object: old.cloned(),
        namespace_object,
        dry_run,
    };
    let authorize = |a: &kts_policy::Attributes| crate::auth::authorize(&inner.store, a).allowed();
    let outcome = kts_policy::admission::evaluate_with_warnings(&policies, &bindings, &request, &authorize);
    let Some(d) = outcome.denial else {
        return Ok(outcome.warnings);
    };
    Err({
        let cause = d.cause().to_string();
        let mut e = ApiError::new(d.code, &d.reason, d.message);
        let t = rr.target(name);
        let mut details = json!({"name": name, "kind": t.resource});
        if !t.group.is_empty() {
            details["group"] = json!(t.group);
        }
        // Like the real server: one cause without a field, so kubectl prints
        // `The <res> "<name>" is invalid: : ValidatingAdmissionPolicy '...' ... denied request: ...`.
        details["causes"] = json!([{ "message": cause }]);
        e.details = Some(details);
        e
    })
}
