//! The CEL `authorizer` library (`authorizer.group(g).resource(r).namespace(ns)
//! .name(n).subresource(s).check(verb).allowed()`, `authorizer.path(p)`,
//! `authorizer.serviceAccount(ns, name)`, `authorizer.requestResource`) and an
//! evaluator that answers its checks with the caller's non-`'static` authorize closure.
//!
//! cel-rust functions must be `'static`, so they cannot call the closure. Instead a
//! check whose answer is not known yet records the question and fails; the evaluator
//! answers every recorded question and runs the (pure) expression again, until it
//! completes without new questions.

use super::AdmissionRequest;
use crate::cel_support::error_text;
use crate::cel_support::{self, get, get_str, map_of, string, with};
use crate::rbac::effective_user;
use crate::{Attributes, UserInfo};
use cel::extractors::This;
use cel::objects::Map;
use cel::{Context, ExecutionError, Program, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const KIND: &str = "__kts_authz";

#[derive(Default)]
struct State {
    answers: HashMap<String, bool>,
    pending: Vec<(String, Attributes)>,
}

pub(crate) struct Evaluator<'a> {
    state: Arc<Mutex<State>>,
    user: UserInfo,
    vars: Vec<(&'static str, Value)>,
    authorize: &'a dyn Fn(&Attributes) -> bool,
}

impl<'a> Evaluator<'a> {
    pub fn new(request: &AdmissionRequest, authorize: &'a dyn Fn(&Attributes) -> bool) -> Self {
        let authorizer = map_of(vec![
            (KIND, string("authorizer")),
            (
                "requestResource",
                map_of(vec![
                    (KIND, string("resource")),
                    ("group", string(&request.api_group)),
                    ("resource", string(&request.resource)),
                    ("subresource", string(&request.sub_resource)),
                    ("namespace", string(&request.namespace)),
                    ("name", string(&request.name)),
                ]),
            ),
        ]);
        Evaluator {
            state: Arc::default(),
            user: request.user.clone(),
            vars: vec![("authorizer", authorizer)],
            authorize,
        }
    }

    pub fn bind(&mut self, name: &'static str, value: Value) {
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value));
    }

    /// Runs `program`, answering authorizer checks as they come up.
    pub fn run(&self, program: &Program) -> Result<Value, String> {
        for _ in 0..64 {
            let ctx = self.context();
            let result = program.execute(&ctx);
            let pending = std::mem::take(&mut self.lock().pending);
            if pending.is_empty() {
                return result.map_err(|e| error_text(&e));
            }
            for (key, attrs) in pending {
                let allowed = (self.authorize)(&attrs);
                self.lock().answers.insert(key, allowed);
            }
        }
        Err("too many authorization checks in one expression".into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere in this evaluation; the map is
        // still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn context(&self) -> Context<'static, 'static> {
        let mut ctx = cel_support::context();
        for (name, value) in &self.vars {
            ctx.add_variable_from_value(*name, value.clone());
        }
        let _ = ctx
            .add_function("group", |This(t): This<Value>, g: Arc<String>| step(&t, "authorizer", "group", &g, "group"));
        let _ = ctx.add_function("resource", |This(t): This<Value>, r: Arc<String>| {
            step(&t, "group", "resource", &r, "resource")
        });
        let _ = ctx.add_function("subresource", |This(t): This<Value>, s: Arc<String>| {
            step(&t, "resource", "subresource", &s, "resource")
        });
        let _ = ctx.add_function("namespace", |This(t): This<Value>, n: Arc<String>| {
            step(&t, "resource", "namespace", &n, "resource")
        });
        let _ = ctx
            .add_function("name", |This(t): This<Value>, n: Arc<String>| step(&t, "resource", "name", &n, "resource"));
        let _ =
            ctx.add_function("path", |This(t): This<Value>, p: Arc<String>| step(&t, "authorizer", "path", &p, "path"));
        let _ = ctx.add_function("serviceAccount", |This(t): This<Value>, ns: Arc<String>, name: Arc<String>| {
            let m = receiver(&t, &["authorizer"], "serviceAccount")?;
            Ok::<Value, ExecutionError>(Value::Map(with(
                &m,
                "username",
                string(&format!("system:serviceaccount:{ns}:{name}")),
            )))
        });
        let state = self.state.clone();
        let user = self.user.clone();
        let _ = ctx.add_function("check", move |This(t): This<Value>, verb: Arc<String>| {
            let m = receiver(&t, &["resource", "path"], "check")?;
            let attrs = attributes(&m, &verb, &user);
            let key = format!("{attrs:?}");
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match st.answers.get(&key) {
                Some(allowed) => Ok(map_of(vec![(KIND, string("decision")), ("allowed", Value::Bool(*allowed))])),
                None => {
                    st.pending.push((key, attrs));
                    Err(ExecutionError::function_error("check", "authorization decision pending"))
                }
            }
        });
        let _ = ctx.add_function("allowed", |This(t): This<Value>| decision(&t, "allowed"));
        let _ = ctx.add_function("errored", |This(t): This<Value>| decision(&t, "allowed").map(|_| Value::Bool(false)));
        // The authorize closure answers yes/no only: no reasons, no errors.
        let _ = ctx.add_function("reason", |This(t): This<Value>| decision(&t, "allowed").map(|_| string("")));
        let _ = ctx.add_function("error", |This(t): This<Value>| decision(&t, "allowed").map(|_| string("")));
        ctx
    }
}

fn receiver(this: &Value, kinds: &[&str], function: &str) -> Result<Map, ExecutionError> {
    match this {
        Value::Map(m) if get_str(m, KIND).is_some_and(|k| kinds.contains(&k.as_str())) => Ok(m.clone()),
        other => Err(ExecutionError::function_error(function, format!("not supported on {}", other.type_of()))),
    }
}

/// One builder step: checks the receiver kind, sets `field`, and moves to `next` kind.
fn step(this: &Value, kind: &str, field: &str, value: &str, next: &str) -> Result<Value, ExecutionError> {
    let m = receiver(this, &[kind], field)?;
    Ok(Value::Map(with(&with(&m, field, string(value)), KIND, string(next))))
}

fn decision(this: &Value, field: &str) -> Result<Value, ExecutionError> {
    let m = receiver(this, &["decision"], field)?;
    Ok(get(&m, field).unwrap_or(Value::Bool(false)))
}

fn attributes(check: &Map, verb: &str, request_user: &UserInfo) -> Attributes {
    let field = |k: &str| get_str(check, k).unwrap_or_default();
    let user = match get_str(check, "username") {
        // `serviceAccount(ns, name)` checks as that service account, with its groups.
        Some(username) => effective_user(&UserInfo { username, ..Default::default() }),
        None => request_user.clone(),
    };
    let path = get_str(check, "path");
    Attributes {
        user,
        verb: verb.to_string(),
        api_group: field("group"),
        resource: field("resource"),
        subresource: field("subresource"),
        namespace: field("namespace"),
        name: field("name"),
        non_resource_path: (get_str(check, KIND).as_deref() == Some("path")).then(|| path.unwrap_or_default()),
    }
}
