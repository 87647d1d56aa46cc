//! Replica counts for the refined planner.
//!
//! The start is DeepSeek's rule (largest load per replica gets the next slot) with at most one
//! replica per GPU of the scope, so that no GPU needs two copies of one expert whenever the shape
//! allows it.

use crate::options::Effort;
use crate::replication::{ReplicationScratch, replicate_greedy};

/// Reusable buffers of the count search.
#[derive(Debug, Default)]
pub struct CountPlanner {
    phy2log: Vec<u32>,
    rank: Vec<u32>,
    replication: ReplicationScratch<f64>,
}

impl CountPlanner {
    /// Chooses `counts` (one per expert, each `>= 1`, summing to `num_slots`) for `loads` placed on
    /// `num_gpus` GPUs of `num_slots / num_gpus` slots each.
    pub fn choose(
        &mut self,
        loads: &[f64],
        num_slots: usize,
        num_gpus: usize,
        _effort: Effort,
        counts: &mut Vec<u32>,
    ) {
        counts.resize(loads.len(), 0);
        self.phy2log.resize(num_slots, 0);
        self.rank.resize(num_slots, 0);
        let cap = u32::try_from(num_gpus).unwrap_or(u32::MAX);
        replicate_greedy(
            loads,
            cap,
            &mut self.replication,
            &mut self.phy2log,
            &mut self.rank,
            counts,
        );
    }
}
