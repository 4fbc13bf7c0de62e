//! The kubectl plugin's commands as a library, so the binary stays a thin entry point and
//! the pieces (parsing, key files, error sentences, output formats) are unit-tested.

pub mod agent_trust;
pub mod cli;
pub mod commands;
pub mod completion;
pub mod config;
pub mod context;
pub mod error;
pub mod keystore;
pub mod known_agents;
pub mod target;
