//! Pack weights: `f32` for DeepSeek's f32 accumulation, `f64` for the refined planner.

use std::ops::{Add, AddAssign};

/// A non-negative, finite weight that packs accumulate.
pub trait Weight: Copy + PartialOrd + Add<Output = Self> + AddAssign + Default + Send + Sync {
    /// A key whose unsigned order equals the numeric order of non-negative finite values.
    fn order_key(self) -> u64;
    /// The value in f64.
    fn as_f64(self) -> f64;
}

impl Weight for f32 {
    fn order_key(self) -> u64 {
        u64::from((self + 0.0).to_bits())
    }
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Weight for f64 {
    fn order_key(self) -> u64 {
        (self + 0.0).to_bits()
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// Fills `order` with item indices sorted by weight descending; equal weights keep ascending index
/// order (a stable descending sort, as DESIGN.md requires).
pub fn sort_descending<W: Weight>(weights: &[W], keys: &mut Vec<(u64, u32)>, order: &mut Vec<u32>) {
    keys.clear();
    keys.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| (!w.order_key(), i as u32)),
    );
    keys.sort_unstable();
    order.clear();
    order.extend(keys.iter().map(|&(_, i)| i));
}

/// Division of a load by a replica count, in the weight's own precision.
pub trait PerReplica: Weight {
    /// `self / count`, rounded as the type rounds.
    fn per_replica(self, count: u32) -> Self;
}

impl PerReplica for f32 {
    fn per_replica(self, count: u32) -> Self {
        self / count as f32
    }
}

impl PerReplica for f64 {
    fn per_replica(self, count: u32) -> Self {
        self / f64::from(count)
    }
}
