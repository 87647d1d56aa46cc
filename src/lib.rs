//! # eplb: Expert Parallelism Load Balancer
//!
//! Decides where the experts of a Mixture-of-Experts model live across GPUs: which experts get
//! redundant replicas and which GPU slot holds each replica, so that every GPU carries nearly the
//! same load. A native, dependency-free replacement for DeepSeek's `eplb.py` with a C ABI.
//!
//! The safe core (this crate's Rust API) has no raw pointers: [`packing`], [`replication`],
//! [`plan`] (the policies), [`metrics`] and [`error`]. The C API lives in [`ffi`], the only module
//! with `unsafe` code. Words follow DESIGN.md: `num_logical` experts, `num_replicas` slots,
//! `num_groups`, `num_nodes`, `num_gpus`, `phy2log`, `logcnt`, `log2phy`.

pub mod error;
pub mod ffi;
pub mod load;
pub mod metrics;
pub mod options;
pub mod packing;
pub mod plan;
pub mod replication;
pub mod shape;
#[cfg(test)]
mod test_rng;

pub use error::{Error, Result, Status};
pub use load::Load;
pub use options::{Algorithm, Effort, Options};
pub use packing::{Packing, balanced_packing};
pub use plan::{Plan, rebalance_experts};
pub use replication::{Replication, replicate_experts};
pub use shape::{Policy, Shape};
