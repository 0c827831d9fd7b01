//! wasq
#![allow(missing_docs)]
pub mod config;
#[cfg(feature = "runtime")]
pub mod runtime;
