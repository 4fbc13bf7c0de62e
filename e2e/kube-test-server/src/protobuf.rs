//! kubectl's typed clients (`auth can-i`, `auth whoami`) send `application/vnd.kubernetes.protobuf`
//! bodies. The answer may be JSON (they accept both), so only request decoding is needed, and
//! only for what kubectl creates this way: access and rules reviews, Secret, ConfigMap, Namespace,
//! ServiceAccount. Other protobuf bodies answer 415 (documented gap).

use prost::Message;
use serde_json::{Value, json};

/// `runtime.Unknown`, the envelope after the `k8s\0` magic.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(string, tag = "2")]
    verb: String,
    #[prost(string, tag = "3")]
    group: String,
    #[prost(string, tag = "4")]
    version: String,
    #[prost(string, tag = "5")]
    resource: String,
    #[prost(string, tag = "6")]
    subresource: String,
    #[prost(string, tag = "7")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(string, tag = "2")]
    verb: String,
}

/// Spec of SubjectAccessReview/LocalSubjectAccessReview; the self variant uses tags 1-2 only.
#[derive(Clone, PartialEq, Message)]
struct ReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
    #[prost(string, tag = "3")]
    user: String,
    #[prost(string, repeated, tag = "4")]
    groups: Vec<String>,
    #[prost(string, tag = "6")]
    uid: String,
}

#[derive(Clone, PartialEq, Message)]
struct Review {
    #[prost(message, optional, tag = "2")]
    spec: Option<ReviewSpec>,
}

/// The parts of ObjectMeta a client sets on create.
#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    generate_name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: std::collections::BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: std::collections::BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: std::collections::BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: std::collections::BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Namespace, ServiceAccount: only metadata matters for what kubectl creates.
#[derive(Clone, PartialEq, Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

fn meta_json(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut v = json!({"name": m.name});
    if !m.generate_name.is_empty() {
        v["generateName"] = json!(m.generate_name);
    }
    if !m.namespace.is_empty() {
        v["namespace"] = json!(m.namespace);
    }
    if !m.labels.is_empty() {
        v["labels"] = json!(m.labels);
    }
    if !m.annotations.is_empty() {
        v["annotations"] = json!(m.annotations);
    }
    if !m.finalizers.is_empty() {
        v["finalizers"] = json!(m.finalizers);
    }
    v
}

fn b64(m: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    use base64::Engine;
    let e = &base64::engine::general_purpose::STANDARD;
    json!(m.into_iter().map(|(k, v)| (k, e.encode(v))).collect::<std::collections::BTreeMap<_, _>>())
}

/// Decodes the built-in kinds kubectl's `create secret|configmap|namespace|serviceaccount` send.
pub fn decode_builtin(body: &[u8]) -> Option<Value> {
    let env = Unknown::decode(body.strip_prefix(b"k8s\0")?).ok()?;
    let tm = env.type_meta?;
    let raw = env.raw.as_slice();
    let mut v = json!({"apiVersion": tm.api_version, "kind": tm.kind});
    match (tm.api_version.as_str(), tm.kind.as_str()) {
        ("v1", "Secret") => {
            let s = Secret::decode(raw).ok()?;
            v["metadata"] = meta_json(s.metadata);
            v["data"] = b64(s.data);
            if !s.string_data.is_empty() {
                v["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type {
                v["type"] = json!(t);
            }
        }
        ("v1", "ConfigMap") => {
            let c = ConfigMap::decode(raw).ok()?;
            v["metadata"] = meta_json(c.metadata);
            v["data"] = json!(c.data);
            if !c.binary_data.is_empty() {
                v["binaryData"] = b64(c.binary_data);
            }
        }
        ("v1", "Namespace") | ("v1", "ServiceAccount") => {
            v["metadata"] = meta_json(MetaOnly::decode(raw).ok()?.metadata);
        }
        _ => return None,
    }
    Some(v)
}

pub fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/vnd.kubernetes.protobuf")
}

#[derive(Clone, PartialEq, Message)]
struct RulesReviewSpec {
    #[prost(string, tag = "1")]
    namespace: String,
}

#[derive(Clone, PartialEq, Message)]
struct RulesReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<RulesReviewSpec>,
}

/// Decodes a protobuf request body into its JSON form; None for kinds not covered.
pub fn decode(body: &[u8]) -> Option<Value> {
    decode_builtin(body).or_else(|| decode_rules_review(body)).or_else(|| decode_review(body))
}

fn decode_rules_review(body: &[u8]) -> Option<Value> {
    let env = Unknown::decode(body.strip_prefix(b"k8s\0")?).ok()?;
    let tm = env.type_meta?;
    if tm.kind != "SelfSubjectRulesReview" {
        return None;
    }
    let spec = RulesReview::decode(env.raw.as_slice()).ok()?.spec.unwrap_or_default();
    Some(json!({"apiVersion": tm.api_version, "kind": tm.kind, "metadata": {}, "spec": {"namespace": spec.namespace}}))
}

/// Decodes a protobuf access review into its JSON form; None if it is anything else.
fn decode_review(body: &[u8]) -> Option<Value> {
    let env = Unknown::decode(body.strip_prefix(b"k8s\0")?).ok()?;
    let tm = env.type_meta?;
    let spec = Review::decode(env.raw.as_slice()).ok()?.spec.unwrap_or_default();
    let mut s = json!({});
    if let Some(r) = spec.resource_attributes {
        s["resourceAttributes"] = json!({"namespace": r.namespace, "verb": r.verb, "group": r.group,
            "version": r.version, "resource": r.resource, "subresource": r.subresource, "name": r.name});
    }
    if let Some(n) = spec.non_resource_attributes {
        s["nonResourceAttributes"] = json!({"path": n.path, "verb": n.verb});
    }
    if !spec.user.is_empty() {
        s["user"] = json!(spec.user);
        s["groups"] = json!(spec.groups);
        s["uid"] = json!(spec.uid);
    }
    Some(json!({"apiVersion": tm.api_version, "kind": tm.kind, "metadata": {}, "spec": s}))
}
