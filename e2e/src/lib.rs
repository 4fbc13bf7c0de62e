//! End-to-end scenario harness: starts real processes against the Kubernetes API test server.
pub use kube_test_server;
