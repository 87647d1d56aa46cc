//! The C API: the only module with `unsafe` code.
//!
//! Conventions (see README "API conventions"): every fallible function returns an `eplb_status`;
//! on error no output is written and `eplb_last_error_message` gives the detailed message; panics are
//! caught and reported as `EPLB_STATUS_INTERNAL`; all buffers are caller-owned, row-major; functions
//! are reentrant and thread-safe (the only shared state is the thread-local last error).

mod api;
mod boundary;
mod buffers;
mod types;
mod versioned;

pub use api::*;
pub use types::*;
