//! Plan quality (DESIGN.md section 2): GPU loads, balancedness, lower bounds, duplicates.

use crate::error::{Error, Result, try_vec};
use crate::load::{Load, row_to_f64, validate_loads};
use crate::options::Effort;
use crate::packing::Packer;
use crate::packing::exact::{self, ExactScratch};
use crate::replication::{ReplicationScratch, replicate_greedy};
use crate::shape::{Policy, Shape};

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

/// A lower bound on the max GPU load of any plan of `shape` for one layer's loads (DESIGN.md
/// section 2): `max(total / P, m*)`, and under the hierarchical policy also the best possible
/// heaviest node (exact when the branch and bound completes, else `max(total / N, heaviest group)`)
/// over the GPUs per node.
pub fn layer_lower_bound(loads: &[f64], shape: &Shape) -> f64 {
    let total: f64 = loads.iter().sum();
    let mut bound =
        (total / shape.num_gpus as f64).max(min_max_replica_load(loads, shape.num_replicas));
    if shape.policy() == Policy::Hierarchical && shape.num_nodes > 1 {
        let group_size = shape.num_logical / shape.num_groups;
        let groups: Vec<f64> = loads
            .chunks_exact(group_size)
            .map(|g| g.iter().sum())
            .collect();
        let node_bound = best_node_split(&groups, shape.num_nodes);
        bound = bound.max(node_bound / shape.gpus_per_node() as f64);
    }
    bound
}

/// A lower bound on the heaviest node when `group_loads` are split over `num_nodes` nodes with the
/// same number of groups each: the optimum when the exact search completes within its budget.
pub fn best_node_split(group_loads: &[f64], num_nodes: usize) -> f64 {
    let total: f64 = group_loads.iter().sum();
    let heaviest = group_loads.iter().copied().fold(0.0, f64::max);
    let weak = (total / num_nodes as f64).max(heaviest);
    if group_loads.len() > 32 {
        return weak;
    }
    let mut packer = Packer::default();
    let state = packer.pack(group_loads, num_nodes, None, Effort::Default, None);
    let mut state = state.clone();
    let proven = exact::solve(
        &mut state,
        group_loads,
        2_000_000,
        &mut ExactScratch::default(),
    );
    if proven { state.max_load() } else { weak }
}

/// Statistics of one layer of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerStats {
    /// Largest GPU load.
    pub max_gpu_load: f64,
    /// Mean GPU load.
    pub mean_gpu_load: f64,
    /// `mean / max` (1 for a layer without load).
    pub balancedness: f64,
    /// Largest slot load.
    pub max_slot_load: f64,
    /// Lower bound on the max GPU load (see [`layer_lower_bound`]).
    pub lower_bound: f64,
    /// `max / lower_bound - 1` (0 for a layer without load).
    pub gap: f64,
    /// Share of the load on replicas outside their home node (hierarchical policy).
    pub off_home_share: f64,
    /// Slots duplicating an expert on their GPU.
    pub duplicated_replicas: usize,
    /// Weights to move against the old plan.
    pub weights_moved: usize,
    /// Slots changed against the old plan.
    pub slots_changed: usize,
}

/// Statistics of a whole plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanStats {
    /// `sum mean / sum max` over layers.
    pub balancedness: f64,
    /// The same over slots.
    pub slot_balancedness: f64,
    /// Lowest per-layer balancedness.
    pub worst_layer_balancedness: f64,
    /// Its layer.
    pub worst_layer: usize,
    /// Largest per-layer `max / mean`.
    pub max_over_mean: f64,
    /// Sum of per-layer lower bounds.
    pub lower_bound: f64,
    /// `sum max / sum lower_bound - 1`.
    pub gap: f64,
    /// Largest per-layer gap.
    pub worst_layer_gap: f64,
    /// Duplicated replicas over all layers.
    pub duplicated_replicas: usize,
    /// Mean per-layer off-home share.
    pub mean_off_home_share: f64,
    /// Largest per-layer off-home share.
    pub max_off_home_share: f64,
    /// Its layer.
    pub worst_off_home_layer: usize,
    /// Migration against the old plan, when one was given.
    pub migration: Migration,
    /// Per-layer figures.
    pub layers: Vec<LayerStats>,
}

/// What replacing one plan by another moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migration {
    /// (layer, GPU, expert) triples of the new plan absent from the old.
    pub weights_moved: usize,
    /// All (layer, GPU, expert) triples of the new plan.
    pub weights_total: usize,
    /// Slots whose expert changed.
    pub slots_changed: usize,
    /// Layers with identical rows.
    pub layers_unchanged: usize,
}

impl Migration {
    /// Adds one layer's figures.
    pub fn add_layer(&mut self, new_row: &[i64], old_row: &[i64], slots_per_gpu: usize) {
        let (moved, total) = weights_moved(new_row, old_row, slots_per_gpu);
        self.weights_moved += moved;
        self.weights_total += total;
        let changed = new_row.iter().zip(old_row).filter(|(a, b)| a != b).count();
        self.slots_changed += changed;
        self.layers_unchanged += usize::from(changed == 0);
    }
}

/// `(moved, total)`: distinct (GPU, expert) pairs of `new_row` absent from `old_row`, and all
/// distinct pairs of `new_row`.
pub fn weights_moved(new_row: &[i64], old_row: &[i64], slots_per_gpu: usize) -> (usize, usize) {
    let mut moved = 0;
    let mut total = 0;
    for (new_gpu, old_gpu) in new_row
        .chunks_exact(slots_per_gpu)
        .zip(old_row.chunks_exact(slots_per_gpu))
    {
        for (i, x) in new_gpu.iter().enumerate() {
            if new_gpu[..i].contains(x) {
                continue;
            }
            total += 1;
            moved += usize::from(!old_gpu.contains(x));
        }
    }
    (moved, total)
}

/// Checks that `phy2log` (`[num_layers][num_replicas]`) is a plan for `shape`: every entry an expert
/// id, every expert at least one slot. Returns the replica counts (`[num_layers][num_logical]`).
pub fn validate_plan(arg: &'static str, phy2log: &[i64], shape: &Shape) -> Result<Vec<i64>> {
    let (e, r) = (shape.num_logical, shape.num_replicas);
    let mut counts = try_vec(shape.num_layers * e, 0i64)?;
    for (layer, row) in phy2log.chunks_exact(r).enumerate() {
        let cnt = &mut counts[layer * e..(layer + 1) * e];
        for (slot, &x) in row.iter().enumerate() {
            if x < 0 || x as usize >= e {
                return Err(Error::InvalidPlan {
                    arg,
                    reason: format!(
                        "{arg}[{layer}][{slot}] = {x} is not an expert id (must be in 0..{e})"
                    ),
                });
            }
            cnt[x as usize] += 1;
        }
        if let Some(missing) = cnt.iter().position(|&c| c == 0) {
            return Err(Error::InvalidPlan {
                arg,
                reason: format!(
                    "layer {layer} has no slot for expert {missing}; every expert needs at least one"
                ),
            });
        }
    }
    Ok(counts)
}

/// Off-home share of one layer: load carried by slots outside the home node of their expert's group,
/// over the layer's total. `group_node` gives each group's home node.
pub fn off_home_share(
    loads: &[f64],
    phy2log: &[i64],
    logcnt: &[i64],
    group_node: &[i64],
    shape: &Shape,
) -> f64 {
    let total: f64 = loads.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let group_size = shape.num_logical / shape.num_groups;
    let slots_per_node = shape.num_replicas / shape.num_nodes;
    let off: f64 = phy2log
        .chunks_exact(slots_per_node)
        .zip(0i64..)
        .flat_map(|(slots, node)| {
            slots
                .iter()
                .filter(move |&&x| group_node[x as usize / group_size] != node)
        })
        .map(|&x| loads[x as usize] / logcnt[x as usize] as f64)
        .sum();
    off / total
}

/// The home node of each group inferred from a plan: the node carrying the largest share of the
/// group's load (lowest node on ties).
pub fn infer_group_nodes(
    loads: &[f64],
    phy2log: &[i64],
    logcnt: &[i64],
    shape: &Shape,
) -> Vec<i64> {
    let group_size = shape.num_logical / shape.num_groups;
    let slots_per_node = shape.num_replicas / shape.num_nodes;
    let mut share = vec![0.0f64; shape.num_groups * shape.num_nodes];
    let mut slots = vec![0usize; shape.num_groups * shape.num_nodes];
    for (slot, &x) in phy2log.iter().enumerate() {
        let idx = (x as usize / group_size) * shape.num_nodes + slot / slots_per_node;
        share[idx] += loads[x as usize] / logcnt[x as usize] as f64;
        slots[idx] += 1;
    }
    (0..shape.num_groups)
        .map(|g| {
            let mut best = 0;
            for n in 1..shape.num_nodes {
                let (a, b) = (g * shape.num_nodes + n, g * shape.num_nodes + best);
                if (share[a], slots[a]) > (share[b], slots[b]) {
                    best = n;
                }
            }
            best as i64
        })
        .collect()
}

/// Statistics of a plan for `loads`. `logcnt`, when given, must match `phy2log`; `group_node`
/// (`[num_layers][num_groups]`) gives home nodes (inferred when absent); `old_phy2log` adds
/// migration figures.
pub fn plan_stats<L: Load>(
    loads: &[L],
    shape: &Shape,
    phy2log: &[i64],
    logcnt: Option<&[i64]>,
    group_node: Option<&[i64]>,
    old_phy2log: Option<&[i64]>,
) -> Result<PlanStats> {
    validate_loads(loads, shape.num_logical)?;
    let counts = validate_plan("phy2log", phy2log, shape)?;
    if let Some(given) = logcnt {
        check_logcnt(given, &counts, shape)?;
    }
    if let Some(old) = old_phy2log {
        validate_plan("old_phy2log", old, shape)?;
    }
    let hierarchical = shape.policy() == Policy::Hierarchical;
    if let (Some(homes), true) = (group_node, hierarchical) {
        check_group_nodes(homes, shape)?;
    }
    let (e, r, k) = (shape.num_logical, shape.num_replicas, shape.slots_per_gpu());
    let mut stats = PlanStats {
        worst_layer_balancedness: 1.0,
        ..PlanStats::default()
    };
    let (mut sum_mean, mut sum_max, mut sum_slot_mean, mut sum_slot_max, mut sum_lb) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut row = Vec::new();
    let mut gpus = Vec::new();
    for layer in 0..shape.num_layers {
        row_to_f64(&loads[layer * e..(layer + 1) * e], &mut row);
        let plan_row = &phy2log[layer * r..(layer + 1) * r];
        let cnt = &counts[layer * e..(layer + 1) * e];
        gpu_loads(&row, plan_row, cnt, k, &mut gpus);
        let total: f64 = row.iter().sum();
        let max = gpus.iter().copied().fold(0.0, f64::max);
        let mean = total / shape.num_gpus as f64;
        let max_slot = plan_row
            .iter()
            .map(|&x| row[x as usize] / cnt[x as usize] as f64)
            .fold(0.0, f64::max);
        let lower_bound = layer_lower_bound(&row, shape);
        let mut ls = LayerStats {
            max_gpu_load: max,
            mean_gpu_load: mean,
            balancedness: if max > 0.0 { mean / max } else { 1.0 },
            max_slot_load: max_slot,
            lower_bound,
            gap: if lower_bound > 0.0 {
                max / lower_bound - 1.0
            } else {
                0.0
            },
            duplicated_replicas: duplicated_replicas(plan_row, k),
            ..LayerStats::default()
        };
        if hierarchical && shape.num_nodes > 1 {
            let g = shape.num_groups;
            let homes = match group_node {
                Some(h) => h[layer * g..(layer + 1) * g].to_vec(),
                None => infer_group_nodes(&row, plan_row, cnt, shape),
            };
            ls.off_home_share = off_home_share(&row, plan_row, cnt, &homes, shape);
        }
        if let Some(old) = old_phy2log {
            let old_row = &old[layer * r..(layer + 1) * r];
            let mut one = Migration::default();
            one.add_layer(plan_row, old_row, k);
            ls.weights_moved = one.weights_moved;
            ls.slots_changed = one.slots_changed;
            stats.migration.add_layer(plan_row, old_row, k);
        }
        sum_mean += mean;
        sum_max += max;
        sum_slot_mean += total / r as f64;
        sum_slot_max += max_slot;
        sum_lb += lower_bound;
        if ls.balancedness < stats.worst_layer_balancedness {
            stats.worst_layer_balancedness = ls.balancedness;
            stats.worst_layer = layer;
        }
        if mean > 0.0 {
            stats.max_over_mean = stats.max_over_mean.max(max / mean);
        }
        stats.worst_layer_gap = stats.worst_layer_gap.max(ls.gap);
        stats.duplicated_replicas += ls.duplicated_replicas;
        stats.mean_off_home_share += ls.off_home_share;
        if ls.off_home_share > stats.max_off_home_share {
            stats.max_off_home_share = ls.off_home_share;
            stats.worst_off_home_layer = layer;
        }
        stats.layers.push(ls);
    }
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 1.0 };
    stats.balancedness = ratio(sum_mean, sum_max);
    stats.slot_balancedness = ratio(sum_slot_mean, sum_slot_max);
    stats.lower_bound = sum_lb;
    stats.gap = if sum_lb > 0.0 {
        sum_max / sum_lb - 1.0
    } else {
        0.0
    };
    if shape.num_layers > 0 {
        stats.mean_off_home_share /= shape.num_layers as f64;
    }
    Ok(stats)
}

fn check_logcnt(given: &[i64], counts: &[i64], shape: &Shape) -> Result<()> {
    let e = shape.num_logical;
    match given.iter().zip(counts).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidPlan {
            arg: "logcnt",
            reason: format!(
                "logcnt[{}][{}] = {} but phy2log gives expert {} {} slots",
                i / e,
                i % e,
                given[i],
                i % e,
                counts[i]
            ),
        }),
    }
}

fn check_group_nodes(homes: &[i64], shape: &Shape) -> Result<()> {
    let (g, n) = (shape.num_groups, shape.num_nodes as i64);
    match homes.iter().position(|&h| h < 0 || h >= n) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidPlan {
            arg: "group_node",
            reason: format!(
                "group_node[{}][{}] = {} is not a node (must be in 0..{n})",
                i / g,
                i % g,
                homes[i]
            ),
        }),
    }
}
