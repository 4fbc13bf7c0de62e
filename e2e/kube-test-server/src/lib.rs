//! A Kubernetes API server for tests: real `kubectl` and kube-rs clients work against it
//! unchanged. See `e2e/README.md` for what is faithful, simplified and absent.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kube_test_server::{Config, TestServer};
//! let server = TestServer::start(Config::default().with_user("alice", &["team-a"])).await?;
//! let alice: kube::Client = server.client_as("alice").await?;
//! let kubeconfig = server.kubeconfig_for("alice")?; // for `kubectl --kubeconfig`
//! # Ok(()) }
//! ```

pub mod aggregate;
pub mod auth;
pub mod builtin;
pub mod canary;
pub mod crd;
pub mod discovery;
pub mod escalation;
pub mod events;
pub mod gc;
pub mod handlers;
pub mod impersonate;
pub mod kubeconfig;
pub mod meta;
pub mod openapi;
pub mod protobuf;
pub mod registry;
pub mod rules_review;
pub mod selectors;
pub mod server;
pub mod status;
pub mod store;
pub mod strategy;
pub mod table;
pub mod tls;

mod serve;

pub use auth::{ADMIN_USER, User};
pub use serve::{Config, TestServer, init_test_logging};
