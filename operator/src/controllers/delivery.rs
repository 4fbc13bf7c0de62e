//! The delivery Secret of a read request: the agent's sealed per-key envelopes, relayed as
//! ciphertext only, owned by the request so it goes when the request goes.

use super::owner_reference;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sb_core::crd::SecretReadRequest;
use sb_core::seal::Envelope;
use std::collections::BTreeMap;

/// `type` of every delivery Secret.
pub const DELIVERY_SECRET_TYPE: &str = "secrets-bridge.io/sealed-delivery";
/// Label on every delivery Secret (the controller watches Secrets with it).
pub const DELIVERY_LABEL: &str = "secrets-bridge.io/delivery";
/// Annotation naming the request uid the envelopes are bound to.
pub const REQUEST_UID_ANNOTATION: &str = "secrets-bridge.io/request-uid";
/// Annotation with the RFC 3339 instant the operator deletes the delivery unrevealed.
pub const EXPIRES_AT_ANNOTATION: &str = "secrets-bridge.io/expires-at";

/// Name of the delivery Secret of request `name`.
pub fn delivery_name(request_name: &str) -> String {
    format!("{request_name}-delivery")
}

/// Builds the delivery Secret: data key → `Envelope::to_compact()` bytes, nothing else.
pub fn delivery_secret(
    request: &SecretReadRequest,
    deliveries: &BTreeMap<String, Envelope>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Secret {
    let data = deliveries
        .iter()
        .map(|(key, envelope)| (key.clone(), ByteString(envelope.to_compact().into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(delivery_name(&request.name_any())),
            namespace: request.namespace(),
            labels: Some(BTreeMap::from([
                (DELIVERY_LABEL.to_owned(), "true".to_owned()),
                ("secrets-bridge.io/request".to_owned(), request.name_any()),
            ])),
            annotations: Some(BTreeMap::from([
                (REQUEST_UID_ANNOTATION.to_owned(), request.uid().unwrap_or_default()),
                (EXPIRES_AT_ANNOTATION.to_owned(), expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ])),
            owner_references: owner_reference(request).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(DELIVERY_SECRET_TYPE.to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_core::crd::{SecretReadRequestSpec, TargetRef};
    use sb_core::seal::{Aad, KeyPair, Purpose, SecretValue, seal};

    #[test]
    fn the_delivery_holds_only_compact_envelopes_and_points_back_at_its_request() {
        let mut request = SecretReadRequest::new(
            "db",
            SecretReadRequestSpec {
                target: TargetRef {
                    agent: "edge".into(),
                    provider: "vault".into(),
                    reference: "team-a/db".into(),
                    keys: vec![],
                },
                justification: "why".into(),
                requester: "alice".into(),
                recipient: String::new(),
                delivery: Default::default(),
            },
        );
        request.metadata.namespace = Some("team-a".into());
        request.metadata.uid = Some("uid-1".into());
        let keys = KeyPair::generate();
        let aad = Aad::new("uid-1", "edge/vault:team-a/db", "password");
        let envelope =
            seal(&keys.public, Purpose::ReadDelivery, &aad, &SecretValue::new(b"canary-value".to_vec())).unwrap();
        let deliveries = BTreeMap::from([("password".to_owned(), envelope.clone())]);
        let secret = delivery_secret(&request, &deliveries, chrono::Utc::now());
        assert_eq!(secret.type_.as_deref(), Some(DELIVERY_SECRET_TYPE));
        assert_eq!(secret.metadata.name.as_deref(), Some("db-delivery"));
        let data = secret.data.unwrap();
        assert_eq!(data["password"].0, envelope.to_compact().into_bytes());
        assert!(!String::from_utf8_lossy(&data["password"].0).contains("canary-value"));
        assert_eq!(secret.metadata.annotations.unwrap()[REQUEST_UID_ANNOTATION], "uid-1");
    }
}
