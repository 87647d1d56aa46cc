//! C-visible types and constants.

use libc::size_t;

/// Status code returned by every fallible function; `EPLB_STATUS_OK` (0) is success. Values are
/// stable and never renumbered. `eplb_status_str` describes a code; `eplb_last_error_message` gives
/// the detailed message of the calling thread's last failure.
#[allow(non_camel_case_types)]
pub type eplb_status = i32;

/// Success.
pub const EPLB_STATUS_OK: eplb_status = 0;
/// A panic was caught at the boundary: a bug in eplb. Outputs are untouched.
pub const EPLB_STATUS_INTERNAL: eplb_status = 1;
/// A pointer that must address a non-empty buffer is NULL.
pub const EPLB_STATUS_NULL_POINTER: eplb_status = 2;
/// A pointer is not aligned for its element type (4 bytes for float, 8 for int64_t and structs).
pub const EPLB_STATUS_MISALIGNED_POINTER: eplb_status = 3;
/// An output buffer overlaps an input buffer or another output buffer.
pub const EPLB_STATUS_OVERLAPPING_BUFFERS: eplb_status = 4;
/// A buffer size (a product of size arguments) overflows the address space.
pub const EPLB_STATUS_SIZE_OVERFLOW: eplb_status = 5;
/// A size argument that must be positive is zero (`num_layers` may be zero).
pub const EPLB_STATUS_ZERO_SIZE: eplb_status = 6;
/// `num_replicas` (or `num_physical`) is smaller than `num_logical`.
pub const EPLB_STATUS_TOO_FEW_REPLICAS: eplb_status = 7;
/// A divisibility rule between sizes does not hold.
pub const EPLB_STATUS_NOT_DIVISIBLE: eplb_status = 8;
/// A load is NaN, infinite or negative, or (DeepSeek algorithm) a layer's total exceeds `FLT_MAX`.
pub const EPLB_STATUS_INVALID_LOAD: eplb_status = 9;
/// `log2phy_width` is below the plan's largest replica count (the message gives the width needed).
pub const EPLB_STATUS_WIDTH_TOO_SMALL: eplb_status = 10;
/// An options or statistics struct is malformed (`struct_size`) or holds an out-of-range value.
pub const EPLB_STATUS_INVALID_OPTIONS: eplb_status = 11;
/// An input plan (`old_phy2log`, `phy2log`, `logcnt`, `group_node`) is not a valid plan.
pub const EPLB_STATUS_INVALID_PLAN: eplb_status = 12;
/// Working memory could not be allocated.
pub const EPLB_STATUS_OUT_OF_MEMORY: eplb_status = 13;

/// `eplb_options.algorithm`: exactly DeepSeek's `eplb.py` (bit-exact `phy2log` and `logcnt`).
pub const EPLB_ALGORITHM_DEEPSEEK: i32 = 0;
/// `eplb_options.algorithm`: the refined planner (default); never worse than DeepSeek on any layer.
pub const EPLB_ALGORITHM_REFINED: i32 = 1;

/// `eplb_options.effort`: greedy start and a short swap search.
pub const EPLB_EFFORT_FAST: i32 = 0;
/// `eplb_options.effort` (default): full swap search, exact small splits, packing-aware counts.
pub const EPLB_EFFORT_DEFAULT: i32 = 1;
/// `eplb_options.effort`: adds a differencing start, two-for-two swaps with every pack and a wider
/// replica-count search.
pub const EPLB_EFFORT_HIGH: i32 = 2;
/// `eplb_options.effort`: largest budgets, for the last fraction of a percent.
pub const EPLB_EFFORT_MAX: i32 = 3;

/// Major version; equals the crate version (checked at build time).
pub const EPLB_VERSION_MAJOR: u32 = 0;
/// Minor version; equals the crate version (checked at build time).
pub const EPLB_VERSION_MINOR: u32 = 1;
/// Patch version; equals the crate version (checked at build time).
pub const EPLB_VERSION_PATCH: u32 = 0;

/// Planner options. Fill with `eplb_options_init`, then change fields; pass NULL for defaults.
///
/// `struct_size` is `sizeof(eplb_options)` as the caller compiled it: fields beyond it take their
/// defaults, so callers built against an older header keep working. A `struct_size` larger than
/// this library's struct is accepted only if the extra bytes are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct eplb_options {
    /// `sizeof(eplb_options)`; set by `eplb_options_init`.
    pub struct_size: size_t,
    /// `EPLB_ALGORITHM_REFINED` (default) or `EPLB_ALGORITHM_DEEPSEEK`.
    pub algorithm: i32,
    /// `EPLB_EFFORT_FAST` .. `EPLB_EFFORT_MAX`; default `EPLB_EFFORT_DEFAULT`. Ignored by DeepSeek.
    pub effort: i32,
    /// Re-planning with an old plan only: a layer keeps a plan that moves fewer expert weights when
    /// its max GPU load is within this fraction of the best plan's (0.01 = 1%). Finite, `>= 0`;
    /// default 0 (never lose balance).
    pub max_balance_loss: f64,
    /// Hierarchical policy only (`num_groups % num_nodes == 0`; ignored otherwise): the share of a
    /// layer's load that replicas placed outside their expert's home node may carry, in `[0, 1]`.
    /// 0 (default) is the strict hierarchical plan; 1 removes the locality limit. Refined only.
    pub max_off_home_share: f64,
}

/// What a re-plan moves. Set `struct_size = sizeof(eplb_migration_stats)` before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct eplb_migration_stats {
    /// `sizeof(eplb_migration_stats)`, set by the caller.
    pub struct_size: size_t,
    /// Expert weights to copy: (layer, GPU, expert) triples in the new plan that the old lacks.
    pub weights_moved: size_t,
    /// All (layer, GPU, expert) triples of the new plan (the count a from-scratch deploy moves).
    pub weights_total: size_t,
    /// Slots whose expert differs between the old and the new plan.
    pub slots_changed: size_t,
    /// Layers whose `phy2log` row is identical to the old one.
    pub layers_unchanged: size_t,
}

/// Summary statistics of a plan (see `eplb_evaluate_plan`). Set `struct_size = sizeof(eplb_plan_stats)`
/// before the call; fields beyond a smaller `struct_size` are not written.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct eplb_plan_stats {
    /// `sizeof(eplb_plan_stats)`, set by the caller.
    pub struct_size: size_t,
    /// Sum over layers of the mean GPU load divided by the sum of the max GPU load; 1 is perfect.
    pub balancedness: f64,
    /// The same over slots instead of GPUs (ignores packing).
    pub slot_balancedness: f64,
    /// The lowest per-layer `mean / max` GPU load.
    pub worst_layer_balancedness: f64,
    /// The layer with the lowest `mean / max`.
    pub worst_layer: size_t,
    /// The largest per-layer `max / mean` GPU load.
    pub max_over_mean: f64,
    /// Sum over layers of the lower bound on the max GPU load.
    pub lower_bound: f64,
    /// Sum of max GPU loads over the sum of lower bounds, minus 1 (0 = provably optimal).
    pub gap: f64,
    /// The largest per-layer gap.
    pub worst_layer_gap: f64,
    /// Slots holding an expert that another slot of the same GPU already holds.
    pub duplicated_replicas: size_t,
    /// Hierarchical policy: mean over layers of the off-home share; 0 under the global policy.
    pub mean_off_home_share: f64,
    /// Hierarchical policy: the largest per-layer off-home share.
    pub max_off_home_share: f64,
    /// The layer with the largest off-home share.
    pub worst_off_home_layer: size_t,
    /// With `old_phy2log`: (layer, GPU, expert) triples in the plan that the old plan lacks.
    pub weights_moved: size_t,
    /// With `old_phy2log`: slots whose expert changed.
    pub slots_changed: size_t,
    /// With `old_phy2log`: layers whose row is identical to the old plan's.
    pub layers_unchanged: size_t,
}

/// Per-layer statistics (see `eplb_evaluate_plan`). Fixed layout: a later version adds a new struct
/// rather than changing this one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct eplb_layer_stats {
    /// Largest GPU load.
    pub max_gpu_load: f64,
    /// Mean GPU load (the layer's total load over `num_gpus`).
    pub mean_gpu_load: f64,
    /// `mean_gpu_load / max_gpu_load` (1 when the layer has no load).
    pub balancedness: f64,
    /// Largest slot load (`load / count` of the slot's expert).
    pub max_slot_load: f64,
    /// Lower bound on the max GPU load of any plan of this shape and policy.
    pub lower_bound: f64,
    /// `max_gpu_load / lower_bound - 1`.
    pub gap: f64,
    /// Hierarchical policy: share of the load carried by replicas outside their home node.
    pub off_home_share: f64,
    /// Slots duplicating an expert on their GPU.
    pub duplicated_replicas: size_t,
    /// With `old_phy2log`: weights to move for this layer.
    pub weights_moved: size_t,
    /// With `old_phy2log`: slots changed in this layer.
    pub slots_changed: size_t,
}
