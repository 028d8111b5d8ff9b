//! The control plane: the configuration file (typed, validated once, checkable
//! with `--check-config`), the compiled tables, the REST API and metrics.

pub mod acls;
pub mod api;
pub mod config;
pub mod edit;
pub mod metrics;
pub mod services;
pub mod slots;
pub mod state;
