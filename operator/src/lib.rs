//! Secrets Bridge control plane.

pub mod cli;
pub mod crdgen;
pub mod policy;
