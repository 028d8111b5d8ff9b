//! The control plane: the configuration file (typed, validated once, checkable
//! with `--check-config`), and later the REST API and metrics.

pub mod acls;
pub mod config;
pub mod metrics;
pub mod services;
pub mod slots;
pub mod state;
