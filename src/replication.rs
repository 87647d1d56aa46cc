//! Replication: how many physical slots each logical expert gets.
//!
//! DeepSeek's rule gives each redundant slot to the expert with the largest load per replica (first
//! index on ties). It minimises the largest replica load, so its result is also the lower bound
//! `m*` of DESIGN.md section 2.

use std::collections::BinaryHeap;

use crate::error::{Result, try_vec};
use crate::load::{Load, row_to_f32, validate_loads};
use crate::packing::weight::PerReplica;
use crate::shape::{checked_product, require_positive};

/// Reusable buffers of [`replicate_greedy`].
#[derive(Debug, Default)]
pub struct ReplicationScratch<W: PerReplica> {
    heap: BinaryHeap<W::Key>,
    candidates: Vec<W::Key>,
}

/// Greedy replication of one row: the first `weights.len()` slots hold experts `0..E` in order, each
/// further slot the expert with the largest `load / count` (first index on ties) among experts with
/// fewer than `cap` replicas (no cap when every expert has reached it). Writes each slot's expert to
/// `phy2log`, each slot's replica rank to `rank` and each expert's count to `logcnt`.
/// Precondition: `phy2log.len() >= weights.len()`.
pub fn replicate_greedy<W: PerReplica>(
    weights: &[W],
    cap: u32,
    scratch: &mut ReplicationScratch<W>,
    phy2log: &mut [u32],
    rank: &mut [u32],
    logcnt: &mut [u32],
) {
    let e = weights.len();
    for i in 0..e {
        phy2log[i] = i as u32;
        rank[i] = 0;
        logcnt[i] = 1;
    }
    let extra = phy2log.len() - e;
    if extra == 0 {
        return;
    }
    // Only the `extra` experts first in (load descending, index ascending) order can receive a
    // redundant slot: an expert behind them is chosen only once each of them, at a per-replica
    // load at least its own, already took one, and then no slot is left. So the heap holds just
    // those candidates (all experts when the cap may be lifted or few are excluded).
    let keys = &mut scratch.candidates;
    keys.clear();
    keys.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| w.per_replica(1).max_first_key(i as u32)),
    );
    if cap > 1 && extra < e {
        keys.select_nth_unstable_by(extra - 1, |a, b| b.cmp(a));
        keys.truncate(extra);
    }
    let heap = &mut scratch.heap;
    heap.clear();
    let mut limit = cap;
    let mut initial = std::mem::take(heap).into_vec();
    initial.clear();
    if limit > 1 {
        initial.extend_from_slice(keys);
    }
    *heap = BinaryHeap::from(initial);
    for slot in e..phy2log.len() {
        if heap.is_empty() {
            // Every expert is at the cap: lift it.
            limit = u32::MAX;
            let mut all = std::mem::take(heap).into_vec();
            all.clear();
            all.extend(
                weights
                    .iter()
                    .zip(logcnt.iter())
                    .enumerate()
                    .map(|(i, (&w, &c))| w.per_replica(c).max_first_key(i as u32)),
            );
            *heap = BinaryHeap::from(all);
        }
        // max_first_key stores the complement of the index.
        let expert = !W::key_index(heap.pop().expect("at least one expert"));
        let x = expert as usize;
        phy2log[slot] = expert;
        rank[slot] = logcnt[x];
        logcnt[x] += 1;
        if logcnt[x] < limit {
            heap.push(weights[x].per_replica(logcnt[x]).max_first_key(expert));
        }
    }
}

/// Replication of every layer (`[num_layers][num_logical]` loads to `num_physical` slots), exactly as
/// DeepSeek's `replicate_experts`: `phy2log` and `replica_rank` are `[num_layers][num_physical]`,
/// `logcnt` is `[num_layers][num_logical]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// The logical expert of each physical slot.
    pub phy2log: Vec<i64>,
    /// Which replica of its expert each slot holds (0 for the first).
    pub replica_rank: Vec<i64>,
    /// Replicas per expert.
    pub logcnt: Vec<i64>,
}

/// The size rules of [`replicate_experts`]: both sizes positive, `num_physical >= num_logical`.
pub fn check_sizes(num_logical: usize, num_physical: usize) -> Result<()> {
    require_positive("num_logical", num_logical)?;
    require_positive("num_physical", num_physical)?;
    if num_physical < num_logical {
        return Err(crate::Error::TooFewReplicas {
            replicas_arg: "num_physical",
            replicas: num_physical,
            logical: num_logical,
        });
    }
    Ok(())
}

/// DeepSeek's `replicate_experts` for every layer, in f32 like the reference.
pub fn replicate_experts<L: Load>(
    weights: &[L],
    num_layers: usize,
    num_logical: usize,
    num_physical: usize,
) -> Result<Replication> {
    check_sizes(num_logical, num_physical)?;
    let len_log = checked_product("num_layers x num_logical", &[num_layers, num_logical])?;
    let len_phy = checked_product("num_layers x num_physical", &[num_layers, num_physical])?;
    debug_assert_eq!(weights.len(), len_log);
    validate_loads(weights, num_logical)?;
    let mut out = Replication {
        phy2log: try_vec(len_phy, 0i64)?,
        replica_rank: try_vec(len_phy, 0i64)?,
        logcnt: try_vec(len_log, 0i64)?,
    };
    let mut phy = try_vec(num_physical, 0u32)?;
    let mut rank = try_vec(num_physical, 0u32)?;
    let mut cnt = try_vec(num_logical, 0u32)?;
    let mut row = Vec::new();
    let mut scratch = ReplicationScratch::default();
    for layer in 0..num_layers {
        row_to_f32(
            &weights[layer * num_logical..(layer + 1) * num_logical],
            &mut row,
        );
        replicate_greedy(&row, u32::MAX, &mut scratch, &mut phy, &mut rank, &mut cnt);
        let phy_out = layer * num_physical..(layer + 1) * num_physical;
        for (dst, &v) in out.phy2log[phy_out.clone()].iter_mut().zip(&phy) {
            *dst = i64::from(v);
        }
        for (dst, &v) in out.replica_rank[phy_out].iter_mut().zip(&rank) {
            *dst = i64::from(v);
        }
        let log_out = layer * num_logical..(layer + 1) * num_logical;
        for (dst, &v) in out.logcnt[log_out].iter_mut().zip(&cnt) {
            *dst = i64::from(v);
        }
    }
    Ok(out)
}
