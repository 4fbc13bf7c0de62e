//! Secrets Bridge control plane.

pub mod api;
pub mod audit;
pub mod cli;
pub mod controllers;
pub mod crdgen;
pub mod faults;
pub mod gitops;
pub mod kms;
pub mod policy;
pub mod run;
pub mod shutdown;
pub mod store;
pub mod tls;
