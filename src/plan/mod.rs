//! Whole plans: `phy2log`, `logcnt`, `log2phy` and each group's home node, for every layer.

pub mod counts;
pub mod deepseek;
pub mod locality;
pub mod migration;
pub mod refined;

use crate::error::{Error, Result, try_vec};
use crate::load::{Load, validate_loads};
use crate::metrics::{Migration, validate_plan};
use crate::options::{Algorithm, Options};
use crate::shape::{Shape, checked_product};

use deepseek::DeepSeekPlanner;
use refined::RefinedPlanner;

/// A placement plan for every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The shape the plan was made for.
    pub shape: Shape,
    /// `[num_layers][num_replicas]`: the logical expert in each physical slot.
    pub phy2log: Vec<i64>,
    /// `[num_layers][num_logical]`: replicas per expert.
    pub logcnt: Vec<i64>,
    /// `[num_layers][num_groups]`: each group's home node under the hierarchical policy; -1 under
    /// the global policy.
    pub group_node: Vec<i64>,
}

impl Plan {
    /// The largest replica count and the first layer that has it (0 when there are no layers).
    pub fn max_replica_count(&self) -> (usize, usize) {
        max_replica_count(&self.logcnt, self.shape.num_logical)
    }

    /// Checks that `width` can hold every expert's slots.
    pub fn check_log2phy_width(&self, width: usize) -> Result<()> {
        check_log2phy_width(&self.logcnt, self.shape.num_logical, width)
    }

    /// Writes `log2phy` (`[num_layers][num_logical][width]`): each expert's slots in ascending
    /// order, padded with -1. Fails with `WidthTooSmall` before writing anything.
    pub fn write_log2phy(&self, out: &mut [i64], width: usize) -> Result<()> {
        write_log2phy(&self.shape, &self.phy2log, &self.logcnt, out, width)
    }

    /// `log2phy` as a new vector (see [`Plan::write_log2phy`]).
    pub fn log2phy(&self, width: usize) -> Result<Vec<i64>> {
        self.check_log2phy_width(width)?;
        let len = checked_product(
            "num_layers x num_logical x log2phy_width",
            &[self.shape.num_layers, self.shape.num_logical, width],
        )?;
        let mut out = try_vec(len, -1i64)?;
        self.write_log2phy(&mut out, width)?;
        Ok(out)
    }
}

/// The largest replica count in `logcnt` (`[num_layers][num_logical]`) and the first layer that
/// has it (0 when there are no layers).
pub fn max_replica_count(logcnt: &[i64], num_logical: usize) -> (usize, usize) {
    let mut best = (0usize, 0usize);
    for (layer, row) in logcnt.chunks_exact(num_logical.max(1)).enumerate() {
        let m = row.iter().copied().max().unwrap_or(0) as usize;
        if m > best.0 {
            best = (m, layer);
        }
    }
    best
}

/// Checks that a `log2phy` row of `width` entries can hold every expert's slots.
pub fn check_log2phy_width(logcnt: &[i64], num_logical: usize, width: usize) -> Result<()> {
    let (needed, layer) = max_replica_count(logcnt, num_logical);
    if width < needed {
        return Err(Error::WidthTooSmall {
            given: width,
            needed,
            layer,
        });
    }
    Ok(())
}

/// Writes `log2phy` (`[num_layers][num_logical][width]`) of a plan given by `phy2log` and
/// `logcnt` (consistent with it): each expert's slots in ascending order, padded with -1. Fails
/// with `WidthTooSmall` before writing anything.
pub fn write_log2phy(
    shape: &Shape,
    phy2log: &[i64],
    logcnt: &[i64],
    out: &mut [i64],
    width: usize,
) -> Result<()> {
    let (e, r) = (shape.num_logical, shape.num_replicas);
    check_log2phy_width(logcnt, e, width)?;
    if width == 0 || e == 0 {
        return Ok(());
    }
    // Layer by layer, so that each layer's rows are still in cache when its slots land.
    let mut fill = vec![0usize; e];
    for (row, layer_out) in phy2log.chunks_exact(r).zip(out.chunks_exact_mut(e * width)) {
        layer_out.fill(-1);
        fill.fill(0);
        for (slot, &x) in row.iter().enumerate() {
            let x = x as usize;
            layer_out[x * width + fill[x]] = slot as i64;
            fill[x] += 1;
        }
    }
    Ok(())
}

/// Refuses loads whose f32 sums overflow when DeepSeek's f32 arithmetic is selected.
fn check_f32_range<L: Load>(loads: &[L], shape: &Shape) -> Result<()> {
    for (layer, row) in loads.chunks_exact(shape.num_logical).enumerate() {
        let total: f64 = row.iter().map(|v| f64::from(v.to_f32())).sum();
        if total > f64::from(f32::MAX) {
            return Err(Error::LoadOverflow {
                arg: L::ARG,
                layer,
                total,
            });
        }
    }
    Ok(())
}

/// Plans every layer of `loads` (`[num_layers][num_logical]`).
pub fn rebalance_experts<L: Load>(loads: &[L], shape: &Shape, options: &Options) -> Result<Plan> {
    check_inputs(loads, shape, options)?;
    let (l, e, r, g) = (
        shape.num_layers,
        shape.num_logical,
        shape.num_replicas,
        shape.num_groups,
    );
    let mut plan = Plan {
        shape: *shape,
        phy2log: try_vec(checked_product("num_layers x num_replicas", &[l, r])?, 0i64)?,
        logcnt: try_vec(checked_product("num_layers x num_logical", &[l, e])?, 0i64)?,
        group_node: try_vec(checked_product("num_layers x num_groups", &[l, g])?, -1i64)?,
    };
    plan_rows(
        loads,
        shape,
        options,
        &mut plan.phy2log,
        &mut plan.logcnt,
        &mut plan.group_node,
    );
    Ok(plan)
}

/// The checks shared by every planning entry point: options, sizes, loads.
fn check_inputs<L: Load>(loads: &[L], shape: &Shape, options: &Options) -> Result<()> {
    options.validate()?;
    let len = checked_product(
        "num_layers x num_logical",
        &[shape.num_layers, shape.num_logical],
    )?;
    if loads.len() != len {
        return Err(Error::InvalidPlan {
            arg: L::ARG,
            reason: format!(
                "{} has {} entries; num_layers x num_logical = {len}",
                L::ARG,
                loads.len()
            ),
        });
    }
    validate_loads(loads, shape.num_logical)?;
    if options.algorithm == Algorithm::DeepSeek {
        check_f32_range(loads, shape)?;
    }
    Ok(())
}

/// Plans every layer into buffers of the shape's lengths (inputs already checked).
fn plan_rows<L: Load>(
    loads: &[L],
    shape: &Shape,
    options: &Options,
    phy2log: &mut [i64],
    logcnt: &mut [i64],
    group_node: &mut [i64],
) {
    let (e, r, g) = (shape.num_logical, shape.num_replicas, shape.num_groups);
    if e == 0 || r == 0 || g == 0 {
        return;
    }
    let rows = loads
        .chunks_exact(e)
        .zip(phy2log.chunks_exact_mut(r))
        .zip(logcnt.chunks_exact_mut(e))
        .zip(group_node.chunks_exact_mut(g));
    match options.algorithm {
        Algorithm::DeepSeek => {
            let mut planner = DeepSeekPlanner::default();
            for (((row, phy), cnt), home) in rows {
                planner.plan_layer(row, shape, phy, cnt, home);
            }
        }
        Algorithm::Refined => {
            let mut planner = RefinedPlanner::default();
            for (((row, phy), cnt), home) in rows {
                planner.plan_layer(row, shape, options, phy, cnt, home);
            }
        }
    }
}

/// Plans every layer; with `old_phy2log` (the current placement, `[num_layers][num_replicas]`),
/// re-plans migration-aware (see [`migration`]) and also returns what the change moves.
///
/// With an old plan, every layer's max GPU load is at most the from-scratch plan's
/// ([`rebalance_experts`]) times `1 + options.max_balance_loss`, and among the plans found within
/// that bound the one moving the fewest expert weights is returned. The DeepSeek algorithm only
/// relabels its own plan (same GPU loads). Errors: those of [`rebalance_experts`], and
/// `InvalidPlan` when `old_phy2log` has the wrong length, an id outside `0..num_logical` or an
/// expert without a slot.
pub fn plan_experts<L: Load>(
    loads: &[L],
    shape: &Shape,
    options: &Options,
    old_phy2log: Option<&[i64]>,
) -> Result<(Plan, Option<Migration>)> {
    let Some(old) = old_phy2log else {
        return Ok((rebalance_experts(loads, shape, options)?, None));
    };
    let (l, e, r, g) = (
        shape.num_layers,
        shape.num_logical,
        shape.num_replicas,
        shape.num_groups,
    );
    let len = checked_product("num_layers x num_replicas", &[l, r])?;
    if old.len() != len {
        return Err(Error::InvalidPlan {
            arg: "old_phy2log",
            reason: format!(
                "old_phy2log has {} entries; num_layers x num_replicas = {l} x {r} = {len}",
                old.len()
            ),
        });
    }
    validate_plan("old_phy2log", old, shape)?;
    let fresh = rebalance_experts(loads, shape, options)?;
    let mut plan = fresh.clone();
    let mut replanner = migration::Replanner::default();
    let mut row = Vec::new();
    let mut moved = Migration::default();
    let k = shape.slots_per_gpu();
    for layer in 0..l {
        crate::load::row_to_f64(&loads[layer * e..(layer + 1) * e], &mut row);
        let (phy, cnt, home) = (
            layer * r..(layer + 1) * r,
            layer * e..(layer + 1) * e,
            layer * g..(layer + 1) * g,
        );
        let input = migration::LayerInput {
            loads: &row,
            fresh_phy: &fresh.phy2log[phy.clone()],
            fresh_cnt: &fresh.logcnt[cnt.clone()],
            fresh_home: &fresh.group_node[home.clone()],
            old_phy: &old[phy.clone()],
        };
        replanner.replan_layer(
            &input,
            shape,
            options,
            &mut plan.phy2log[phy.clone()],
            &mut plan.logcnt[cnt],
            &mut plan.group_node[home],
        );
        moved.add_layer(&plan.phy2log[phy.clone()], &old[phy], k);
    }
    Ok((plan, Some(moved)))
}
