//! The exported functions. Each one decodes its arguments through one validation path
//! ([`Region`] checks, [`read_options`], [`Shape::new`]), runs the safe core inside the panic
//! boundary ([`guard`]), and writes outputs only after everything succeeded.

use std::ffi::c_char;

use libc::size_t;

use super::boundary::{guard, with_last_error};
use super::buffers::{Region, check_disjoint, input, write};
use super::types::*;
use super::versioned::{default_options, output_struct_size, read_options, write_struct};
use crate::error::{Error, Result, Status};
use crate::load::Load;
use crate::metrics::{self, LayerStats, PlanStats};
use crate::plan::plan_experts;
use crate::shape::{Shape, checked_product};

// Compile-time agreement between the C constants and the core.
const _: () = {
    assert!(EPLB_STATUS_OK == Status::Ok as i32);
    assert!(EPLB_STATUS_INTERNAL == Status::Internal as i32);
    assert!(EPLB_STATUS_NULL_POINTER == Status::NullPointer as i32);
    assert!(EPLB_STATUS_MISALIGNED_POINTER == Status::MisalignedPointer as i32);
    assert!(EPLB_STATUS_OVERLAPPING_BUFFERS == Status::OverlappingBuffers as i32);
    assert!(EPLB_STATUS_SIZE_OVERFLOW == Status::SizeOverflow as i32);
    assert!(EPLB_STATUS_ZERO_SIZE == Status::ZeroSize as i32);
    assert!(EPLB_STATUS_TOO_FEW_REPLICAS == Status::TooFewReplicas as i32);
    assert!(EPLB_STATUS_NOT_DIVISIBLE == Status::NotDivisible as i32);
    assert!(EPLB_STATUS_INVALID_LOAD == Status::InvalidLoad as i32);
    assert!(EPLB_STATUS_WIDTH_TOO_SMALL == Status::WidthTooSmall as i32);
    assert!(EPLB_STATUS_INVALID_OPTIONS == Status::InvalidOptions as i32);
    assert!(EPLB_STATUS_INVALID_PLAN == Status::InvalidPlan as i32);
    assert!(EPLB_STATUS_OUT_OF_MEMORY == Status::OutOfMemory as i32);
    assert!(EPLB_EFFORT_DEFAULT == crate::options::Effort::Default as i32);
    assert!(EPLB_EFFORT_MAX == crate::options::Effort::Max as i32);
};

const fn parse_version(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

const _: () = {
    assert!(EPLB_VERSION_MAJOR == parse_version(env!("CARGO_PKG_VERSION_MAJOR")));
    assert!(EPLB_VERSION_MINOR == parse_version(env!("CARGO_PKG_VERSION_MINOR")));
    assert!(EPLB_VERSION_PATCH == parse_version(env!("CARGO_PKG_VERSION_PATCH")));
};

/// Fills `*opts` with the defaults (refined algorithm, default effort, no balance loss, strict
/// locality) and sets `struct_size`. Does nothing when `opts` is NULL.
///
/// # Safety
/// A non-NULL `opts` must point to a writable, aligned `eplb_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_options_init(opts: *mut eplb_options) {
    if opts.is_null() || (opts as usize) % align_of::<eplb_options>() != 0 {
        return;
    }
    // SAFETY: non-null and aligned; the caller promises a writable eplb_options.
    unsafe { opts.write(default_options()) }
}

/// Static, NUL-terminated text describing `status` ("unknown status" for other values). Never NULL;
/// do not free.
#[unsafe(no_mangle)]
pub extern "C" fn eplb_status_str(status: eplb_status) -> *const c_char {
    let text = Status::from_code(status)
        .map(Status::description_nul)
        .unwrap_or("unknown status\0");
    text.as_ptr().cast()
}

/// Copies the calling thread's last error message into `buf` (NUL-terminated, truncated to
/// `buf_len - 1` bytes) and returns the message's full length in bytes, without the NUL: a result
/// `>= buf_len` means it was truncated. `buf` may be NULL when `buf_len` is 0 (to ask for the
/// length). The message is empty before the first failure and replaced by each failing call on the
/// same thread; successful calls leave it alone.
///
/// # Safety
/// A non-NULL `buf` must be writable for `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_last_error_message(buf: *mut c_char, buf_len: size_t) -> size_t {
    with_last_error(|message| {
        if !buf.is_null() && buf_len > 0 {
            let n = message.len().min(buf_len - 1);
            // SAFETY: buf is writable for buf_len > n bytes (caller contract); message is ours.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        message.len()
    })
}

/// The library version ("MAJOR.MINOR.PATCH"), static and NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn eplb_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Packs each layer's `num_items` items (`weight`, `[num_layers][num_items]`) into `num_packs` packs
/// of exactly `num_items / num_packs` items. Writes `pack_index` and `rank_in_pack` (both
/// `[num_layers][num_items]`). `EPLB_ALGORITHM_DEEPSEEK` is DeepSeek's greedy `balanced_packing`,
/// bit-exact; the refined default never has a heavier pack than it on any layer.
///
/// Errors: `num_items` or `num_packs` zero, `num_items % num_packs != 0`, invalid loads, bad
/// pointers, bad options. Outputs are untouched on error. Thread-safe and reentrant.
///
/// # Safety
/// Each pointer must be NULL (only allowed for an empty buffer) or valid for its documented number of
/// elements; `opts` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_balanced_packing(
    weight: *const f32,
    num_layers: size_t,
    num_items: size_t,
    num_packs: size_t,
    opts: *const eplb_options,
    pack_index: *mut i64,
    rank_in_pack: *mut i64,
) -> eplb_status {
    guard(|| {
        // SAFETY: opts is NULL or valid per this function's contract.
        let (options, opts_region) = unsafe { read_options(opts) }?;
        crate::packing::check_sizes(num_items, num_packs)?;
        let len = checked_product("num_layers x num_items", &[num_layers, num_items])?;
        check_disjoint(&[
            opts_region,
            Region::new("weight", weight, len, false)?,
            Region::new("pack_index", pack_index, len, true)?,
            Region::new("rank_in_pack", rank_in_pack, len, true)?,
        ])?;
        // SAFETY: checked above; valid for len elements per the contract.
        let loads = unsafe { input(weight, len) };
        let packing =
            crate::packing::balanced_packing(loads, num_layers, num_items, num_packs, &options)?;
        // SAFETY: checked regions of len elements, disjoint from library memory.
        unsafe {
            write(pack_index, &packing.pack_index);
            write(rank_in_pack, &packing.rank_in_pack);
        }
        Ok(())
    })
}

/// DeepSeek's `replicate_experts`, bit-exact: the first `num_logical` slots hold experts in order,
/// each further slot the expert with the largest `weight / count` (first on ties). Writes `phy2log`
/// and `replica_rank` (`[num_layers][num_physical]`) and `logcnt` (`[num_layers][num_logical]`).
///
/// Errors: zero sizes, `num_physical < num_logical`, invalid loads, bad pointers. Outputs are
/// untouched on error. Thread-safe and reentrant.
///
/// # Safety
/// Each pointer must be NULL (only for an empty buffer) or valid for its documented element count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_replicate_experts(
    weight: *const f32,
    num_layers: size_t,
    num_logical: size_t,
    num_physical: size_t,
    phy2log: *mut i64,
    replica_rank: *mut i64,
    logcnt: *mut i64,
) -> eplb_status {
    guard(|| {
        crate::replication::check_sizes(num_logical, num_physical)?;
        let len_log = checked_product("num_layers x num_logical", &[num_layers, num_logical])?;
        let len_phy = checked_product("num_layers x num_physical", &[num_layers, num_physical])?;
        check_disjoint(&[
            Region::new("weight", weight, len_log, false)?,
            Region::new("phy2log", phy2log, len_phy, true)?,
            Region::new("replica_rank", replica_rank, len_phy, true)?,
            Region::new("logcnt", logcnt, len_log, true)?,
        ])?;
        // SAFETY: checked above; valid per the contract.
        let loads = unsafe { input(weight, len_log) };
        let rep =
            crate::replication::replicate_experts(loads, num_layers, num_logical, num_physical)?;
        // SAFETY: checked, disjoint regions of the written lengths.
        unsafe {
            write(phy2log, &rep.phy2log);
            write(replica_rank, &rep.replica_rank);
            write(logcnt, &rep.logcnt);
        }
        Ok(())
    })
}

/// Every argument of a planning call, for one validation path.
struct PlanCall<L> {
    load: *const L,
    num_layers: usize,
    num_logical: usize,
    num_replicas: usize,
    num_groups: usize,
    num_nodes: usize,
    num_gpus: usize,
    opts: *const eplb_options,
    old_phy2log: *const i64,
    old_required: bool,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: usize,
    log2phy_required: bool,
    logcnt: *mut i64,
    group_node: *mut i64,
    stats: *mut eplb_migration_stats,
}

impl<L: Load> PlanCall<L> {
    /// # Safety
    /// Every pointer is NULL or valid for the element count its documentation gives.
    unsafe fn run(self) -> eplb_status {
        guard(|| {
            // SAFETY: forwarded contract.
            let (options, opts_region) = unsafe { read_options(self.opts) }?;
            let shape = Shape::new(
                self.num_layers,
                self.num_logical,
                self.num_replicas,
                self.num_groups,
                self.num_nodes,
                self.num_gpus,
            )?;
            let len_load = checked_product(
                "num_layers x num_logical",
                &[shape.num_layers, shape.num_logical],
            )?;
            let len_phy = checked_product(
                "num_layers x num_replicas",
                &[shape.num_layers, shape.num_replicas],
            )?;
            let len_groups = checked_product(
                "num_layers x num_groups",
                &[shape.num_layers, shape.num_groups],
            )?;
            let write_log2phy = self.log2phy_required || !self.log2phy.is_null();
            let len_log2phy = if write_log2phy {
                checked_product(
                    "num_layers x num_logical x log2phy_width",
                    &[shape.num_layers, shape.num_logical, self.log2phy_width],
                )?
            } else {
                0
            };
            let mut regions = vec![
                opts_region,
                Region::new(L::ARG, self.load, len_load, false)?,
                Region::new("phy2log", self.phy2log, len_phy, true)?,
                Region::new("log2phy", self.log2phy, len_log2phy, true)?,
                Region::new("logcnt", self.logcnt, len_load, true)?,
            ];
            if self.old_required || !self.old_phy2log.is_null() {
                regions.push(Region::new(
                    "old_phy2log",
                    self.old_phy2log,
                    len_phy,
                    false,
                )?);
            }
            if !self.group_node.is_null() {
                regions.push(Region::new(
                    "group_node",
                    self.group_node,
                    len_groups,
                    true,
                )?);
            }
            let stats_size = if self.stats.is_null() {
                0
            } else {
                let align_check = Region::new("stats", self.stats, 1, true)?;
                let _ = align_check;
                // SAFETY: non-null and aligned (checked); the caller provides a struct.
                let size = unsafe { output_struct_size("stats->struct_size", self.stats) }?;
                regions.push(Region::new("stats", self.stats.cast::<u8>(), size, true)?);
                size
            };
            check_disjoint(&regions)?;
            // SAFETY: regions checked; validity is the caller's contract.
            let loads = unsafe { input(self.load, len_load) };
            let old = (self.old_required || !self.old_phy2log.is_null())
                // SAFETY: checked region of len_phy elements.
                .then(|| unsafe { input(self.old_phy2log, len_phy) });
            let (plan, migration) = plan_experts(loads, &shape, &options, old)?;
            if write_log2phy {
                plan.check_log2phy_width(self.log2phy_width)?;
            }
            // Nothing below can fail: write every output.
            // SAFETY: each pointer passed Region::new with the length written and is disjoint
            // from the others.
            unsafe {
                write(self.phy2log, &plan.phy2log);
                write(self.logcnt, &plan.logcnt);
                if write_log2phy && len_log2phy > 0 {
                    let out = std::slice::from_raw_parts_mut(self.log2phy, len_log2phy);
                    plan.write_log2phy(out, self.log2phy_width)?;
                }
                if !self.group_node.is_null() {
                    write(self.group_node, &plan.group_node);
                }
                if !self.stats.is_null() {
                    let m = migration.unwrap_or_default();
                    let value = eplb_migration_stats {
                        struct_size: size_of::<eplb_migration_stats>(),
                        weights_moved: m.weights_moved,
                        weights_total: m.weights_total,
                        slots_changed: m.slots_changed,
                        layers_unchanged: m.layers_unchanged,
                    };
                    write_struct(self.stats, stats_size, &value);
                }
            }
            Ok(())
        })
    }
}

/// Plans expert placement for every layer of `weight` (`[num_layers][num_logical]`, finite, `>= 0`).
///
/// Writes `phy2log` (`[num_layers][num_replicas]`: the expert in each slot; slot `s` is on GPU
/// `s / (num_replicas / num_gpus)`), `log2phy` (`[num_layers][num_logical][log2phy_width]`: each
/// expert's slots ascending, padded with -1) and `logcnt` (`[num_layers][num_logical]`). The
/// hierarchical policy applies when `num_groups % num_nodes == 0`, else the global one. `opts` may
/// be NULL (defaults: refined).
///
/// Errors (outputs untouched): zero sizes, `num_replicas < num_logical`, `num_replicas % num_gpus`,
/// and under the hierarchical policy `num_logical % num_groups` and `num_gpus % num_nodes`; invalid
/// loads; `log2phy_width` below the largest replica count (`num_replicas - num_logical + 1` always
/// suffices); bad pointers or options. Thread-safe and reentrant; deterministic.
///
/// # Safety
/// Each pointer must be NULL (only for an empty buffer; `opts` always may be) or valid for its
/// documented element count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_rebalance_experts(
    weight: *const f32,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
) -> eplb_status {
    let call = PlanCall {
        load: weight,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log: std::ptr::null(),
        old_required: false,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: true,
        logcnt,
        group_node: std::ptr::null_mut(),
        stats: std::ptr::null_mut(),
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// `eplb_rebalance_experts` for integer loads (`load`, `[num_layers][num_logical]`, `>= 0`). The
/// DeepSeek algorithm converts them to float as the reference does (`weight.float()`).
///
/// # Safety
/// As `eplb_rebalance_experts`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_rebalance_experts_i64(
    load: *const i64,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
) -> eplb_status {
    let call = PlanCall {
        load,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log: std::ptr::null(),
        old_required: false,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: true,
        logcnt,
        group_node: std::ptr::null_mut(),
        stats: std::ptr::null_mut(),
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// Re-plans from the current placement `old_phy2log` (`[num_layers][num_replicas]`), moving as few
/// expert weights as possible: no layer's max GPU load exceeds the from-scratch plan's by more than
/// `opts->max_balance_loss` (0 by default: never). Outputs as `eplb_rebalance_experts`; `stats`
/// (nullable; set its `struct_size`) receives what the change moves.
///
/// Errors: as `eplb_rebalance_experts`, plus `EPLB_STATUS_INVALID_PLAN` when `old_phy2log` holds an
/// id outside `0..num_logical` or leaves an expert without a slot.
///
/// # Safety
/// As `eplb_rebalance_experts`; `old_phy2log` must be valid for `num_layers * num_replicas` elements.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_replan_experts(
    weight: *const f32,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    old_phy2log: *const i64,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
    stats: *mut eplb_migration_stats,
) -> eplb_status {
    let call = PlanCall {
        load: weight,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log,
        old_required: true,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: true,
        logcnt,
        group_node: std::ptr::null_mut(),
        stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// `eplb_replan_experts` for integer loads.
///
/// # Safety
/// As `eplb_replan_experts`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_replan_experts_i64(
    load: *const i64,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    old_phy2log: *const i64,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
    stats: *mut eplb_migration_stats,
) -> eplb_status {
    let call = PlanCall {
        load,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log,
        old_required: true,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: true,
        logcnt,
        group_node: std::ptr::null_mut(),
        stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// The general planning call; `eplb_rebalance_experts` and `eplb_replan_experts` are fixed-argument
/// forms of it. Optional arguments may be NULL: `opts` (defaults), `old_phy2log` (plan from
/// scratch), `log2phy` (not written; `log2phy_width` ignored), `group_node` (not written), `stats`.
/// `group_node` (`[num_layers][num_groups]`) receives each group's home node under the hierarchical
/// policy and -1 under the global policy.
///
/// # Safety
/// Each non-NULL pointer must be valid for its documented element count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_plan_experts(
    weight: *const f32,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    old_phy2log: *const i64,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
    group_node: *mut i64,
    stats: *mut eplb_migration_stats,
) -> eplb_status {
    let call = PlanCall {
        load: weight,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log,
        old_required: false,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: false,
        logcnt,
        group_node,
        stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// `eplb_plan_experts` for integer loads.
///
/// # Safety
/// As `eplb_plan_experts`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_plan_experts_i64(
    load: *const i64,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    opts: *const eplb_options,
    old_phy2log: *const i64,
    phy2log: *mut i64,
    log2phy: *mut i64,
    log2phy_width: size_t,
    logcnt: *mut i64,
    group_node: *mut i64,
    stats: *mut eplb_migration_stats,
) -> eplb_status {
    let call = PlanCall {
        load,
        num_layers,
        num_logical,
        num_replicas,
        num_groups,
        num_nodes,
        num_gpus,
        opts,
        old_phy2log,
        old_required: false,
        phy2log,
        log2phy,
        log2phy_width,
        log2phy_required: false,
        logcnt,
        group_node,
        stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// Every argument of a statistics call.
struct StatsCall<L> {
    load: *const L,
    shape: [usize; 6],
    phy2log: *const i64,
    logcnt: *const i64,
    group_node: *const i64,
    old_phy2log: *const i64,
    stats: *mut eplb_plan_stats,
    layer_stats: *mut eplb_layer_stats,
}

impl<L: Load> StatsCall<L> {
    /// # Safety
    /// Every pointer is NULL or valid for its documented element count.
    unsafe fn run(self) -> eplb_status {
        guard(|| {
            let [l, e, r, g, n, p] = self.shape;
            let shape = Shape::new(l, e, r, g, n, p)?;
            let len_load = checked_product("num_layers x num_logical", &[l, e])?;
            let len_phy = checked_product("num_layers x num_replicas", &[l, r])?;
            let len_groups = checked_product("num_layers x num_groups", &[l, g])?;
            if self.stats.is_null() {
                return Err(Error::NullPointer {
                    arg: "stats",
                    len: 1,
                });
            }
            let _ = Region::new("stats", self.stats, 1, true)?;
            // SAFETY: non-null and aligned (checked); the caller provides the struct.
            let stats_size = unsafe { output_struct_size("stats->struct_size", self.stats) }?;
            let optional = |arg, ptr: *const i64, len| -> Result<Option<Region>> {
                if ptr.is_null() {
                    Ok(None)
                } else {
                    Region::new(arg, ptr, len, false).map(Some)
                }
            };
            let mut regions = vec![
                Region::new(L::ARG, self.load, len_load, false)?,
                Region::new("phy2log", self.phy2log, len_phy, false)?,
                Region::new("stats", self.stats.cast::<u8>(), stats_size, true)?,
                Region::new(
                    "layer_stats",
                    self.layer_stats,
                    if self.layer_stats.is_null() { 0 } else { l },
                    true,
                )?,
            ];
            regions.extend(optional("logcnt", self.logcnt, len_load)?);
            regions.extend(optional("group_node", self.group_node, len_groups)?);
            regions.extend(optional("old_phy2log", self.old_phy2log, len_phy)?);
            check_disjoint(&regions)?;
            // SAFETY: all regions checked; validity is the caller's contract.
            let (loads, phy2log) =
                unsafe { (input(self.load, len_load), input(self.phy2log, len_phy)) };
            let opt = |ptr: *const i64, len| (!ptr.is_null()).then(|| unsafe { input(ptr, len) });
            let result = metrics::plan_stats(
                loads,
                &shape,
                phy2log,
                opt(self.logcnt, len_load),
                opt(self.group_node, len_groups),
                opt(self.old_phy2log, len_phy),
            )?;
            let summary = to_c_stats(&result);
            // SAFETY: checked regions; nothing below fails.
            unsafe {
                write_struct(self.stats, stats_size, &summary);
                if !self.layer_stats.is_null() {
                    let layers: Vec<eplb_layer_stats> =
                        result.layers.iter().map(to_c_layer).collect();
                    write(self.layer_stats, &layers);
                }
            }
            Ok(())
        })
    }
}

fn to_c_stats(s: &PlanStats) -> eplb_plan_stats {
    eplb_plan_stats {
        struct_size: size_of::<eplb_plan_stats>(),
        balancedness: s.balancedness,
        slot_balancedness: s.slot_balancedness,
        worst_layer_balancedness: s.worst_layer_balancedness,
        worst_layer: s.worst_layer,
        max_over_mean: s.max_over_mean,
        lower_bound: s.lower_bound,
        gap: s.gap,
        worst_layer_gap: s.worst_layer_gap,
        duplicated_replicas: s.duplicated_replicas,
        mean_off_home_share: s.mean_off_home_share,
        max_off_home_share: s.max_off_home_share,
        worst_off_home_layer: s.worst_off_home_layer,
        weights_moved: s.migration.weights_moved,
        slots_changed: s.migration.slots_changed,
        layers_unchanged: s.migration.layers_unchanged,
    }
}

fn to_c_layer(s: &LayerStats) -> eplb_layer_stats {
    eplb_layer_stats {
        max_gpu_load: s.max_gpu_load,
        mean_gpu_load: s.mean_gpu_load,
        balancedness: s.balancedness,
        max_slot_load: s.max_slot_load,
        lower_bound: s.lower_bound,
        gap: s.gap,
        off_home_share: s.off_home_share,
        duplicated_replicas: s.duplicated_replicas,
        weights_moved: s.weights_moved,
        slots_changed: s.slots_changed,
    }
}

/// Statistics of a plan (`phy2log`, `[num_layers][num_replicas]`) for loads `weight`: balancedness
/// over GPUs and slots, the worst layer, the lower bound on the max GPU load and the gap to it,
/// duplicated replicas, the off-home share (hierarchical policy), and with `old_phy2log` what
/// replacing that plan moves. Set `stats->struct_size` first. Optional (NULL allowed): `logcnt`
/// (checked against `phy2log` when given), `group_node` (`[num_layers][num_groups]` home nodes;
/// inferred when NULL as the node carrying most of the group's load), `old_phy2log`, `layer_stats`
/// (`[num_layers]`).
///
/// Errors: shape rules as `eplb_rebalance_experts`, invalid loads, `EPLB_STATUS_INVALID_PLAN` for a
/// plan that is not one, bad pointers. Outputs untouched on error.
///
/// # Safety
/// Each non-NULL pointer must be valid for its documented element count.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_evaluate_plan(
    weight: *const f32,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    phy2log: *const i64,
    logcnt: *const i64,
    group_node: *const i64,
    old_phy2log: *const i64,
    stats: *mut eplb_plan_stats,
    layer_stats: *mut eplb_layer_stats,
) -> eplb_status {
    let call = StatsCall {
        load: weight,
        shape: [
            num_layers,
            num_logical,
            num_replicas,
            num_groups,
            num_nodes,
            num_gpus,
        ],
        phy2log,
        logcnt,
        group_node,
        old_phy2log,
        stats,
        layer_stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}

/// `eplb_evaluate_plan` for integer loads.
///
/// # Safety
/// As `eplb_evaluate_plan`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eplb_evaluate_plan_i64(
    load: *const i64,
    num_layers: size_t,
    num_logical: size_t,
    num_replicas: size_t,
    num_groups: size_t,
    num_nodes: size_t,
    num_gpus: size_t,
    phy2log: *const i64,
    logcnt: *const i64,
    group_node: *const i64,
    old_phy2log: *const i64,
    stats: *mut eplb_plan_stats,
    layer_stats: *mut eplb_layer_stats,
) -> eplb_status {
    let call = StatsCall {
        load,
        shape: [
            num_layers,
            num_logical,
            num_replicas,
            num_groups,
            num_nodes,
            num_gpus,
        ],
        phy2log,
        logcnt,
        group_node,
        old_phy2log,
        stats,
        layer_stats,
    };
    // SAFETY: forwarded contract.
    unsafe { call.run() }
}
