//! The `cdp` runtime: the configuration document of the whole pipeline and the code that starts
//! its stages — one stage per process in production (`cdp edge`, `cdp control`), or all of them
//! in one process for development (`cdp up`). Tests start the pipeline through the same code.

pub mod config;
pub mod exposure;
pub mod runtime;
pub mod secrets;
pub mod synthetic;

pub use config::CdpConfig;
pub use runtime::{start, Running, Stages, StartError};
