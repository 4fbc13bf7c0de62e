//! Types shared by every Secrets Bridge tier.
//!
//! `sb-core` holds the custom resource definitions, the agent protocol and the sealing
//! primitives. It opens no socket, talks to no database and carries no Kubernetes client:
//! the agent and the plugin depend on it, and CI checks the boundary with `cargo tree`.

pub mod binding;
pub mod crd;
pub mod identity;
pub mod protocol;
pub mod seal;
