//! A Kubernetes API server for tests. See `e2e/README.md` for what is faithful, simplified
//! and absent.
