//! Plan quality (DESIGN.md section 2): GPU loads, balancedness, lower bounds, duplicates.

use crate::replication::{ReplicationScratch, replicate_greedy};

/// Each GPU's load for one layer: the sum over its slots of `load / count` of the slot's expert.
/// `phy2log` and `logcnt` must be a valid plan row for `loads`.
pub fn gpu_loads(
    loads: &[f64],
    phy2log: &[i64],
    logcnt: &[i64],
    slots_per_gpu: usize,
    out: &mut Vec<f64>,
) {
    out.clear();
    out.extend(phy2log.chunks_exact(slots_per_gpu).map(|gpu| {
        gpu.iter()
            .map(|&x| loads[x as usize] / logcnt[x as usize] as f64)
            .sum::<f64>()
    }));
}

/// The largest GPU load of one layer.
pub fn max_gpu_load(
    loads: &[f64],
    phy2log: &[i64],
    logcnt: &[i64],
    slots_per_gpu: usize,
    scratch: &mut Vec<f64>,
) -> f64 {
    gpu_loads(loads, phy2log, logcnt, slots_per_gpu, scratch);
    scratch.iter().copied().fold(0.0, f64::max)
}

/// Number of slots holding an expert that an earlier slot of the same GPU already holds.
pub fn duplicated_replicas(phy2log: &[i64], slots_per_gpu: usize) -> usize {
    phy2log
        .chunks_exact(slots_per_gpu)
        .map(|gpu| {
            (0..gpu.len())
                .filter(|&i| gpu[..i].contains(&gpu[i]))
                .count()
        })
        .sum()
}

/// `m*`: the smallest possible largest replica load when `loads` get `num_slots` slots in total.
/// Greedy replication attains it. Precondition: `num_slots >= loads.len() > 0`.
pub fn min_max_replica_load(loads: &[f64], num_slots: usize) -> f64 {
    let mut phy2log = vec![0u32; num_slots];
    let mut rank = vec![0u32; num_slots];
    let mut counts = vec![0u32; loads.len()];
    replicate_greedy(
        loads,
        u32::MAX,
        &mut ReplicationScratch::default(),
        &mut phy2log,
        &mut rank,
        &mut counts,
    );
    loads
        .iter()
        .zip(&counts)
        .map(|(&w, &c)| w / f64::from(c))
        .fold(0.0, f64::max)
}
