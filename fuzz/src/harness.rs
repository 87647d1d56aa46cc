//! One harness for every exported function of eplb's C API, shared by the coverage-guided fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and the stable tests (`tests/ffi_matrix.rs`,
//! `tests/ffi_random.rs`, `tests/concurrency.rs`, `tests/fuzz_regressions.rs`), which include this
//! file with `#[path]`. It uses nothing but `std` and `eplb`.
//!
//! A [`Call`] describes every argument of one call. [`run`] lays all buffers out in one arena with
//! canary gaps between them, fills the arena with a sentinel pattern, writes the inputs, applies the
//! pointer overrides (NULL, misaligned, dangling, aliasing another buffer), calls the `extern "C"`
//! function, and keeps the arena before and after. [`check`] then holds the C API contract:
//!
//! - on error: the status is a known error status (never `EPLB_STATUS_INTERNAL`), the thread's last
//!   error message is non-empty, and the whole arena (every output, every input, every canary) is
//!   byte-for-byte unchanged;
//! - on success: no byte outside the output regions changed, and the outputs are a valid plan,
//!   packing, replication or statistics record (see [`check`] for the invariants).
//!
//! [`generate`] builds random calls from any [`Source`] of numbers (libFuzzer's bytes or a seeded
//! PRNG), mostly valid, with faults injected, and the set of statuses the faults allow.
#![allow(dead_code)]

use std::ffi::{CStr, c_char};

use eplb::ffi::*;

/// `sizeof(eplb_options)`.
pub const OPTS_SIZE: usize = size_of::<eplb_options>();
/// `sizeof(eplb_migration_stats)`.
pub const MIGRATION_SIZE: usize = size_of::<eplb_migration_stats>();
/// `sizeof(eplb_plan_stats)`.
pub const PLAN_STATS_SIZE: usize = size_of::<eplb_plan_stats>();
/// `sizeof(eplb_layer_stats)`.
pub const LAYER_STATS_SIZE: usize = size_of::<eplb_layer_stats>();
/// Smallest `struct_size` of `eplb_options` the library reads (`struct_size` and `algorithm`).
pub const OPTS_MIN_SIZE: usize = 12;
/// Smallest `struct_size` of an output statistics struct.
pub const STATS_MIN_SIZE: usize = 16;
/// A library bug found by this harness (an output overlapping `opts` was accepted), fixed; held by
/// `tests/ffi_matrix.rs::output_overlapping_opts_is_rejected`. Set to true to keep the random
/// generator from aiming outputs at `opts` should it ever regress.
pub const KNOWN_BUG_OPTS_OVERLAP: bool = false;
/// Largest `struct_size` the library accepts.
pub const MAX_STRUCT_SIZE: usize = 4096;
/// Every status the library defines, with its name.
pub const STATUSES: [(i32, &str); 14] = [
    (EPLB_STATUS_OK, "EPLB_STATUS_OK"),
    (EPLB_STATUS_INTERNAL, "EPLB_STATUS_INTERNAL"),
    (EPLB_STATUS_NULL_POINTER, "EPLB_STATUS_NULL_POINTER"),
    (
        EPLB_STATUS_MISALIGNED_POINTER,
        "EPLB_STATUS_MISALIGNED_POINTER",
    ),
    (
        EPLB_STATUS_OVERLAPPING_BUFFERS,
        "EPLB_STATUS_OVERLAPPING_BUFFERS",
    ),
    (EPLB_STATUS_SIZE_OVERFLOW, "EPLB_STATUS_SIZE_OVERFLOW"),
    (EPLB_STATUS_ZERO_SIZE, "EPLB_STATUS_ZERO_SIZE"),
    (EPLB_STATUS_TOO_FEW_REPLICAS, "EPLB_STATUS_TOO_FEW_REPLICAS"),
    (EPLB_STATUS_NOT_DIVISIBLE, "EPLB_STATUS_NOT_DIVISIBLE"),
    (EPLB_STATUS_INVALID_LOAD, "EPLB_STATUS_INVALID_LOAD"),
    (EPLB_STATUS_WIDTH_TOO_SMALL, "EPLB_STATUS_WIDTH_TOO_SMALL"),
    (EPLB_STATUS_INVALID_OPTIONS, "EPLB_STATUS_INVALID_OPTIONS"),
    (EPLB_STATUS_INVALID_PLAN, "EPLB_STATUS_INVALID_PLAN"),
    (EPLB_STATUS_OUT_OF_MEMORY, "EPLB_STATUS_OUT_OF_MEMORY"),
];

/// The name of a status code.
pub fn status_name(status: i32) -> String {
    STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| format!("unknown status {status}"))
}

/// The exported planning-family functions (the ones that take buffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Packing,
    Replicate,
    Rebalance,
    RebalanceI64,
    Replan,
    ReplanI64,
    Plan,
    PlanI64,
    Evaluate,
    EvaluateI64,
}

impl Func {
    pub const ALL: [Func; 10] = [
        Func::Packing,
        Func::Replicate,
        Func::Rebalance,
        Func::RebalanceI64,
        Func::Replan,
        Func::ReplanI64,
        Func::Plan,
        Func::PlanI64,
        Func::Evaluate,
        Func::EvaluateI64,
    ];

    /// The C name of the function.
    pub fn name(self) -> &'static str {
        match self {
            Func::Packing => "eplb_balanced_packing",
            Func::Replicate => "eplb_replicate_experts",
            Func::Rebalance => "eplb_rebalance_experts",
            Func::RebalanceI64 => "eplb_rebalance_experts_i64",
            Func::Replan => "eplb_replan_experts",
            Func::ReplanI64 => "eplb_replan_experts_i64",
            Func::Plan => "eplb_plan_experts",
            Func::PlanI64 => "eplb_plan_experts_i64",
            Func::Evaluate => "eplb_evaluate_plan",
            Func::EvaluateI64 => "eplb_evaluate_plan_i64",
        }
    }

    pub fn is_i64(self) -> bool {
        matches!(
            self,
            Func::RebalanceI64 | Func::ReplanI64 | Func::PlanI64 | Func::EvaluateI64
        )
    }

    /// Takes the six planning sizes (`num_layers .. num_gpus`).
    pub fn is_planning_shape(self) -> bool {
        !matches!(self, Func::Packing | Func::Replicate)
    }

    /// Produces a plan (`phy2log`, `logcnt`, `log2phy`).
    pub fn makes_plan(self) -> bool {
        matches!(
            self,
            Func::Rebalance
                | Func::RebalanceI64
                | Func::Replan
                | Func::ReplanI64
                | Func::Plan
                | Func::PlanI64
        )
    }

    pub fn is_evaluate(self) -> bool {
        matches!(self, Func::Evaluate | Func::EvaluateI64)
    }

    pub fn has_opts(self) -> bool {
        !matches!(self, Func::Replicate | Func::Evaluate | Func::EvaluateI64)
    }

    /// The name of the load argument.
    pub fn load_name(self) -> &'static str {
        if self.is_i64() { "load" } else { "weight" }
    }

    /// Every pointer argument of the function, in C order.
    pub fn args(self) -> &'static [Arg] {
        use Arg::*;
        match self {
            Func::Packing => &[Load, Opts, PackIndex, RankInPack],
            Func::Replicate => &[Load, Phy2log, ReplicaRank, Logcnt],
            Func::Rebalance | Func::RebalanceI64 => &[Load, Opts, Phy2log, Log2phy, Logcnt],
            Func::Replan | Func::ReplanI64 => {
                &[Load, Opts, OldPhy2log, Phy2log, Log2phy, Logcnt, Stats]
            }
            Func::Plan | Func::PlanI64 => &[
                Load, Opts, OldPhy2log, Phy2log, Log2phy, Logcnt, GroupNode, Stats,
            ],
            Func::Evaluate | Func::EvaluateI64 => &[
                Load, Phy2log, Logcnt, GroupNode, OldPhy2log, Stats, LayerStats,
            ],
        }
    }

    /// Whether the function writes `arg`.
    pub fn writes(self, arg: Arg) -> bool {
        match arg {
            Arg::Load | Arg::Opts | Arg::OldPhy2log => false,
            Arg::Phy2log | Arg::Logcnt | Arg::GroupNode => !self.is_evaluate(),
            _ => true,
        }
    }

    /// Whether NULL is a valid value of `arg` (an optional argument) even when its buffer would be
    /// non-empty.
    pub fn optional(self, arg: Arg) -> bool {
        matches!(
            (self, arg),
            (_, Arg::Opts)
                | (
                    Func::Plan | Func::PlanI64,
                    Arg::OldPhy2log | Arg::Log2phy | Arg::GroupNode
                )
                | (
                    Func::Plan | Func::PlanI64 | Func::Replan | Func::ReplanI64,
                    Arg::Stats
                )
                | (
                    Func::Evaluate | Func::EvaluateI64,
                    Arg::Logcnt | Arg::GroupNode | Arg::OldPhy2log | Arg::LayerStats
                )
        )
    }
}

/// A pointer argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arg {
    Load,
    Opts,
    OldPhy2log,
    Phy2log,
    Log2phy,
    Logcnt,
    GroupNode,
    Stats,
    LayerStats,
    PackIndex,
    RankInPack,
    ReplicaRank,
}

impl Arg {
    /// The C argument name (as error messages give it).
    pub fn c_name(self, func: Func) -> &'static str {
        match self {
            Arg::Load => func.load_name(),
            Arg::Opts => "opts",
            Arg::OldPhy2log => "old_phy2log",
            Arg::Phy2log => "phy2log",
            Arg::Log2phy => "log2phy",
            Arg::Logcnt => "logcnt",
            Arg::GroupNode => "group_node",
            Arg::Stats => "stats",
            Arg::LayerStats => "layer_stats",
            Arg::PackIndex => "pack_index",
            Arg::RankInPack => "rank_in_pack",
            Arg::ReplicaRank => "replica_rank",
        }
    }

    /// Alignment the C API requires.
    pub fn align(self, func: Func) -> usize {
        match self {
            Arg::Load if !func.is_i64() => 4,
            _ => 8,
        }
    }
}

/// How a pointer argument is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ptr {
    /// Its own buffer in the arena.
    Normal,
    /// NULL.
    Null,
    /// Its own buffer, shifted by this many bytes (not a multiple of the alignment).
    Misaligned(usize),
    /// A non-NULL, aligned pointer to nothing (`alignment as *T`): nothing may be read or written.
    Dangling,
    /// An aligned pointer 8 bytes below the top of the address space.
    High,
    /// Inside another argument's buffer, at this element offset of that buffer.
    Alias(Arg, usize),
}

/// Loads of either element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Loads {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Loads {
    pub fn len(&self) -> usize {
        match self {
            Loads::F32(v) => v.len(),
            Loads::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Loads::F32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Loads::I64(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        }
    }

    /// The loads as f64 (what the refined planner and the statistics work with; -0.0 as 0.0).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Loads::F32(v) => v.iter().map(|&x| f64::from(x) + 0.0).collect(),
            Loads::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// The sizes of a call. `eplb_balanced_packing` reads `num_logical` as `num_items` and `num_gpus`
/// as `num_packs`; `eplb_replicate_experts` reads `num_replicas` as `num_physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub layers: usize,
    pub logical: usize,
    pub replicas: usize,
    pub groups: usize,
    pub nodes: usize,
    pub gpus: usize,
    pub width: usize,
}

impl Sizes {
    /// A planning shape with `log2phy_width = num_replicas - num_logical + 1`.
    pub const fn plan(
        layers: usize,
        logical: usize,
        replicas: usize,
        groups: usize,
        nodes: usize,
        gpus: usize,
    ) -> Sizes {
        Sizes {
            layers,
            logical,
            replicas,
            groups,
            nodes,
            gpus,
            width: replicas.saturating_sub(logical) + 1,
        }
    }

    /// Whether the hierarchical policy applies.
    pub fn hierarchical(&self) -> bool {
        self.nodes > 0 && self.groups % self.nodes == 0
    }
}

/// An `eplb_options` as raw bytes (so that `struct_size` and the tail can be anything).
#[derive(Debug, Clone, PartialEq)]
pub struct OptsBytes {
    pub bytes: Vec<u8>,
}

impl OptsBytes {
    /// What `eplb_options_init` fills in.
    pub fn defaults() -> OptsBytes {
        let mut o = std::mem::MaybeUninit::<eplb_options>::zeroed();
        // SAFETY: a valid, aligned eplb_options.
        unsafe { eplb_options_init(o.as_mut_ptr()) };
        // SAFETY: initialised by eplb_options_init (and zeroed before).
        let o = unsafe { o.assume_init() };
        OptsBytes::from_struct(&o, OPTS_SIZE)
    }

    /// The defaults with `algorithm` set.
    pub fn algorithm(algorithm: i32) -> OptsBytes {
        let mut o = OptsBytes::defaults();
        o.set_i32(8, algorithm);
        o
    }

    /// `o` as `len` bytes (zero beyond the struct), `struct_size` as in `o`.
    pub fn from_struct(o: &eplb_options, len: usize) -> OptsBytes {
        let mut bytes = vec![0u8; len.max(OPTS_SIZE)];
        bytes[0..8].copy_from_slice(&o.struct_size.to_ne_bytes());
        bytes[8..12].copy_from_slice(&o.algorithm.to_ne_bytes());
        bytes[12..16].copy_from_slice(&o.effort.to_ne_bytes());
        bytes[16..24].copy_from_slice(&o.max_balance_loss.to_ne_bytes());
        bytes[24..32].copy_from_slice(&o.max_off_home_share.to_ne_bytes());
        bytes.truncate(len.max(8));
        OptsBytes { bytes }
    }

    pub fn struct_size(&self) -> usize {
        usize::from_ne_bytes(self.bytes[0..8].try_into().unwrap())
    }

    /// Sets `struct_size` and grows the buffer (with zeros) to hold that many bytes, up to the
    /// largest size the library reads.
    pub fn set_struct_size(&mut self, size: usize) {
        self.bytes[0..8].copy_from_slice(&size.to_ne_bytes());
        let need = size.min(MAX_STRUCT_SIZE);
        if self.bytes.len() < need {
            self.bytes.resize(need, 0);
        }
    }

    fn ensure(&mut self, end: usize) {
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
    }

    pub fn set_i32(&mut self, offset: usize, v: i32) {
        self.ensure(offset + 4);
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn set_f64(&mut self, offset: usize, v: f64) {
        self.ensure(offset + 8);
        self.bytes[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
    }

    fn get_i32(&self, offset: usize) -> Option<i32> {
        (self.struct_size() >= offset + 4 && self.bytes.len() >= offset + 4)
            .then(|| i32::from_ne_bytes(self.bytes[offset..offset + 4].try_into().unwrap()))
    }

    fn get_f64(&self, offset: usize) -> Option<f64> {
        (self.struct_size() >= offset + 8 && self.bytes.len() >= offset + 8)
            .then(|| f64::from_ne_bytes(self.bytes[offset..offset + 8].try_into().unwrap()))
    }

    /// The algorithm field (only meaningful when the struct is valid).
    pub fn algorithm_value(&self) -> i32 {
        self.get_i32(8).unwrap_or(EPLB_ALGORITHM_REFINED)
    }

    pub fn max_off_home_share_value(&self) -> f64 {
        self.get_f64(24).unwrap_or(0.0)
    }

    pub fn max_balance_loss_value(&self) -> f64 {
        self.get_f64(16).unwrap_or(0.0)
    }

    /// This harness's model of the documented options rules: `None` when valid, else the field the
    /// message must name.
    pub fn fault(&self) -> Option<&'static str> {
        let size = self.struct_size();
        if !(OPTS_MIN_SIZE..=MAX_STRUCT_SIZE).contains(&size) {
            return Some("opts->struct_size");
        }
        if size > OPTS_SIZE && self.bytes[OPTS_SIZE..size].iter().any(|&b| b != 0) {
            return Some("opts->struct_size");
        }
        let algorithm = self.algorithm_value();
        if algorithm != EPLB_ALGORITHM_DEEPSEEK && algorithm != EPLB_ALGORITHM_REFINED {
            return Some("opts->algorithm");
        }
        let effort = self.get_i32(12).unwrap_or(EPLB_EFFORT_DEFAULT);
        if !(EPLB_EFFORT_FAST..=EPLB_EFFORT_MAX).contains(&effort) {
            return Some("opts->effort");
        }
        let loss = self.get_f64(16).unwrap_or(0.0);
        if !(loss.is_finite() && loss >= 0.0) {
            return Some("opts->max_balance_loss");
        }
        let share = self.get_f64(24).unwrap_or(0.0);
        if !(0.0..=1.0).contains(&share) || (share > 0.0 && algorithm == EPLB_ALGORITHM_DEEPSEEK) {
            return Some("opts->max_off_home_share");
        }
        None
    }
}

/// A statistics struct argument: the `struct_size` the caller declares and the bytes it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSpec {
    pub struct_size: usize,
}

impl StatsSpec {
    pub fn new(struct_size: usize) -> StatsSpec {
        StatsSpec { struct_size }
    }

    /// Bytes the caller owns: `struct_size` (at least the `struct_size` field itself).
    pub fn alloc(&self) -> usize {
        self.struct_size.clamp(8, MAX_STRUCT_SIZE)
    }

    pub fn valid(&self) -> bool {
        (STATS_MIN_SIZE..=MAX_STRUCT_SIZE).contains(&self.struct_size)
    }
}

/// Every argument of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Func,
    pub sizes: Sizes,
    pub loads: Loads,
    /// `None`: NULL (defaults).
    pub opts: Option<OptsBytes>,
    /// `None`: NULL.
    pub old_phy2log: Option<Vec<i64>>,
    /// `eplb_evaluate_plan`'s plan.
    pub in_phy2log: Vec<i64>,
    /// `eplb_evaluate_plan`'s `logcnt` (`None`: NULL).
    pub in_logcnt: Option<Vec<i64>>,
    /// `eplb_evaluate_plan`'s `group_node` (`None`: NULL).
    pub in_group_node: Option<Vec<i64>>,
    /// `eplb_plan_experts`: pass a `log2phy` buffer (others always do).
    pub out_log2phy: bool,
    /// `eplb_plan_experts`: pass a `group_node` buffer.
    pub out_group_node: bool,
    /// `eplb_evaluate_plan`: pass a `layer_stats` buffer.
    pub out_layer_stats: bool,
    /// `None`: NULL.
    pub stats: Option<StatsSpec>,
    /// Pointer overrides.
    pub ptrs: Vec<(Arg, Ptr)>,
}

impl Call {
    /// A call with the given loads and every optional argument absent (NULL), outputs present.
    pub fn new(func: Func, sizes: Sizes, loads: Loads) -> Call {
        let loads = match (func.is_i64(), loads) {
            (true, Loads::F32(v)) => Loads::I64(v.iter().map(|&x| x as i64).collect()),
            (false, Loads::I64(v)) => Loads::F32(v.iter().map(|&x| x as f32).collect()),
            (_, l) => l,
        };
        let mut call = Call {
            func,
            sizes,
            loads,
            opts: None,
            old_phy2log: None,
            in_phy2log: Vec::new(),
            in_logcnt: None,
            in_group_node: None,
            out_log2phy: true,
            out_group_node: true,
            out_layer_stats: true,
            stats: None,
            ptrs: Vec::new(),
        };
        if matches!(func, Func::Replan | Func::ReplanI64) {
            call.old_phy2log = Some(simple_plan(&sizes));
        }
        if func.is_evaluate() {
            call.in_phy2log = simple_plan(&sizes);
            call.stats = Some(StatsSpec::new(PLAN_STATS_SIZE));
        }
        call
    }

    /// `Call::new` with deterministic, skewed, valid loads.
    pub fn valid(func: Func, sizes: Sizes) -> Call {
        let n = sizes.layers.saturating_mul(sizes.logical).min(1 << 20);
        let loads: Vec<i64> = (0..n).map(|i| ((i * 7919 + 13) % 97 + 1) as i64).collect();
        Call::new(func, sizes, Loads::I64(loads))
    }

    pub fn with_ptr(mut self, arg: Arg, ptr: Ptr) -> Call {
        self.ptrs.retain(|(a, _)| *a != arg);
        self.ptrs.push((arg, ptr));
        self
    }

    /// Every pointer argument dangling (for size-overflow cases: nothing may be read).
    pub fn all_dangling(mut self) -> Call {
        for &arg in self.func.args() {
            if arg != Arg::Opts && arg != Arg::Stats {
                self = self.with_ptr(arg, Ptr::Dangling);
            }
        }
        self
    }

    pub fn ptr(&self, arg: Arg) -> Ptr {
        self.ptrs
            .iter()
            .find(|(a, _)| *a == arg)
            .map(|(_, p)| *p)
            .unwrap_or(Ptr::Normal)
    }

    /// Whether the argument is passed non-NULL before overrides.
    pub fn present(&self, arg: Arg) -> bool {
        let f = self.func;
        if !f.args().contains(&arg) {
            return false;
        }
        match arg {
            Arg::Opts => self.opts.is_some(),
            Arg::OldPhy2log => self.old_phy2log.is_some(),
            Arg::Log2phy => !matches!(f, Func::Plan | Func::PlanI64) || self.out_log2phy,
            Arg::GroupNode if f.is_evaluate() => self.in_group_node.is_some(),
            Arg::GroupNode => self.out_group_node,
            Arg::Logcnt if f.is_evaluate() => self.in_logcnt.is_some(),
            Arg::Stats => self.stats.is_some(),
            Arg::LayerStats => self.out_layer_stats,
            _ => true,
        }
    }

    /// Whether the argument is passed non-NULL (after overrides).
    pub fn passed(&self, arg: Arg) -> bool {
        self.present(arg) && self.ptr(arg) != Ptr::Null
    }

    /// The options the library sees (`None`: defaults).
    pub fn effective_opts(&self) -> Option<&OptsBytes> {
        self.opts.as_ref().filter(|_| self.passed(Arg::Opts))
    }

    /// The old plan the library sees.
    pub fn effective_old(&self) -> Option<&[i64]> {
        self.old_phy2log
            .as_deref()
            .filter(|_| self.passed(Arg::OldPhy2log))
    }

    /// The byte length of the argument's buffer as the C API computes it (`None`: overflows).
    pub fn declared_bytes(&self, arg: Arg) -> Option<usize> {
        let s = &self.sizes;
        let m = |f: &[usize], elem: usize| -> Option<usize> {
            f.iter().try_fold(elem, |acc, &x| acc.checked_mul(x))
        };
        match arg {
            Arg::Load => m(
                &[s.layers, s.logical],
                if self.func.is_i64() { 8 } else { 4 },
            ),
            Arg::Opts => Some(self.opts.as_ref().map_or(0, |o| o.bytes.len())),
            Arg::OldPhy2log | Arg::Phy2log | Arg::ReplicaRank => m(&[s.layers, s.replicas], 8),
            Arg::Log2phy => m(&[s.layers, s.logical, s.width], 8),
            Arg::Logcnt | Arg::PackIndex | Arg::RankInPack => m(&[s.layers, s.logical], 8),
            Arg::GroupNode => m(&[s.layers, s.groups], 8),
            Arg::Stats => Some(self.stats.map_or(0, |st| st.alloc())),
            Arg::LayerStats => m(&[s.layers], LAYER_STATS_SIZE),
        }
    }

    /// Element size used for `Ptr::Alias` offsets into this argument.
    pub fn elem(&self, arg: Arg) -> usize {
        match arg {
            Arg::Load if !self.func.is_i64() => 4,
            Arg::Opts | Arg::Stats => 8,
            Arg::LayerStats => LAYER_STATS_SIZE,
            _ => 8,
        }
    }

    /// The algorithm the call selects (when its options are valid).
    pub fn algorithm(&self) -> i32 {
        self.effective_opts()
            .map_or(EPLB_ALGORITHM_REFINED, |o| o.algorithm_value())
    }

    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        let s = &self.sizes;
        let mut text = format!(
            "{}(L={}, E={}, R={}, G={}, N={}, P={}, W={})",
            self.func.name(),
            s.layers,
            s.logical,
            s.replicas,
            s.groups,
            s.nodes,
            s.gpus,
            s.width
        );
        if !self.ptrs.is_empty() {
            text += &format!(" ptrs={:?}", self.ptrs);
        }
        if let Some(o) = &self.opts {
            text += &format!(" opts={:?}", &o.bytes[..o.bytes.len().min(40)]);
        }
        if let Some(st) = self.stats {
            text += &format!(" stats.struct_size={}", st.struct_size);
        }
        text
    }
}

/// A valid plan row per layer: experts `0..E` then `x % E` for the extra slots.
pub fn simple_plan(s: &Sizes) -> Vec<i64> {
    let n = s.layers.saturating_mul(s.replicas).min(1 << 20);
    (0..n)
        .map(|i| (i % s.replicas.max(1) % s.logical.max(1)) as i64)
        .collect()
}

/// Where each argument lives in the arena.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `(arg, byte offset of its own buffer, byte length)` for arguments passed `Normal` or
    /// `Misaligned` (which shifts the pointer inside a buffer one word larger).
    pub own: Vec<(Arg, usize, usize)>,
    /// `(arg, byte offset the pointer addresses inside the arena)` for every in-arena pointer.
    pub at: Vec<(Arg, usize)>,
}

impl Layout {
    pub fn offset(&self, arg: Arg) -> Option<usize> {
        self.at.iter().find(|(a, _)| *a == arg).map(|(_, o)| *o)
    }
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: i32,
    /// `eplb_last_error_message` after the call (the previous message when the call succeeded).
    pub message: String,
    /// The length `eplb_last_error_message(NULL, 0)` returned.
    pub message_len: usize,
    pub layout: Layout,
    pub before: Vec<u8>,
    pub after: Vec<u8>,
}

impl Outcome {
    /// The old plan as the library saw it (read from the arena before the call), if passed.
    pub fn old_plan(&self, call: &Call) -> Option<Vec<i64>> {
        let n = call.sizes.layers * call.sizes.replicas;
        if !call.passed(Arg::OldPhy2log) {
            return None;
        }
        if n == 0 {
            return Some(Vec::new());
        }
        let o = self.layout.offset(Arg::OldPhy2log)?;
        Some(read_i64s(&self.before, o, n))
    }

    pub fn i64s(&self, arg: Arg, n: usize) -> Vec<i64> {
        if n == 0 {
            return Vec::new();
        }
        let o = self.layout.offset(arg).expect("argument in the arena");
        read_i64s(&self.after, o, n)
    }

    /// The bytes of an output in the arena after the call.
    pub fn bytes(&self, arg: Arg, n: usize) -> &[u8] {
        let o = self.layout.offset(arg).expect("argument in the arena");
        &self.after[o..o + n]
    }

    /// Bytes of the arena that changed.
    pub fn changed(&self) -> Vec<usize> {
        (0..self.before.len())
            .filter(|&i| self.before[i] != self.after[i])
            .collect()
    }
}

pub fn read_i64s(bytes: &[u8], offset: usize, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let at = offset + 8 * i;
            i64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
        })
        .collect()
}

fn read_f64(bytes: &[u8], at: usize) -> f64 {
    f64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn read_usize(bytes: &[u8], at: usize) -> usize {
    usize::from_ne_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The sentinel byte at arena position `i` (position-dependent so shifted copies show).
pub fn sentinel(i: usize) -> u8 {
    0xA5 ^ (i as u8).wrapping_mul(0x3B)
}

const GAP: usize = 24;
/// Largest buffer the harness allocates for a `Normal` pointer.
const MAX_BUFFER: usize = 1 << 28;

/// Runs a call through the C ABI (see the module docs).
pub fn run(call: &Call) -> Outcome {
    let func = call.func;
    // Lay out every argument that has its own buffer.
    let mut cursor = GAP;
    let mut own = Vec::new();
    for &arg in func.args() {
        if !call.present(arg) {
            continue;
        }
        let extra = match call.ptr(arg) {
            Ptr::Normal => 0,
            Ptr::Misaligned(_) => 8,
            _ => continue,
        };
        let bytes = call.declared_bytes(arg).unwrap_or_else(|| {
            panic!(
                "harness: {} overflows but is passed Normal: {}",
                arg.c_name(func),
                call.describe()
            )
        });
        assert!(
            bytes <= MAX_BUFFER,
            "harness: {} needs {bytes} bytes: {}",
            arg.c_name(func),
            call.describe()
        );
        own.push((arg, cursor, bytes + extra));
        cursor = (cursor + bytes + extra + GAP).next_multiple_of(8);
    }
    let own_off = |arg: Arg| own.iter().find(|(a, _, _)| *a == arg).map(|&(_, o, _)| o);
    // Where every in-arena pointer points, and the arena's size.
    let mut at = Vec::new();
    let mut end = cursor;
    for &arg in func.args() {
        if !call.present(arg) {
            continue;
        }
        let offset = match call.ptr(arg) {
            Ptr::Normal => own_off(arg),
            Ptr::Misaligned(k) => own_off(arg).map(|o| o + k),
            Ptr::Alias(target, k) => {
                let base = own_off(target).unwrap_or_else(|| {
                    panic!(
                        "harness: alias target {target:?} has no buffer: {}",
                        call.describe()
                    )
                });
                Some(base + k * call.elem(target))
            }
            _ => None,
        };
        if let Some(o) = offset {
            let bytes = call.declared_bytes(arg).expect("in-arena buffer size");
            assert!(bytes <= MAX_BUFFER, "harness: aliased buffer too large");
            end = end.max(o + bytes + GAP);
            at.push((arg, o));
        }
    }
    let words = end.div_ceil(8) + 1;
    let mut arena = vec![0u64; words];
    let base = arena.as_mut_ptr().cast::<u8>();
    let len = words * 8;
    {
        // SAFETY: the arena is `len` bytes, exclusively ours.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, len) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = sentinel(i);
        }
        let mut put = |arg: Arg, data: &dyn Fn() -> Vec<u8>| {
            let offset = at.iter().find(|(a, _)| *a == arg).map(|(_, o)| *o);
            if let (true, Some(o)) = (
                matches!(call.ptr(arg), Ptr::Normal | Ptr::Misaligned(_)),
                offset,
            ) {
                let mut data = data();
                data.resize(call.declared_bytes(arg).unwrap_or(0), 0);
                bytes[o..o + data.len()].copy_from_slice(&data);
            }
        };
        let i64_bytes = |v: &[i64]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
        put(Arg::Load, &|| call.loads.bytes());
        if let Some(o) = &call.opts {
            put(Arg::Opts, &|| o.bytes.clone());
        }
        if let Some(old) = &call.old_phy2log {
            put(Arg::OldPhy2log, &|| i64_bytes(old));
        }
        if func.is_evaluate() {
            put(Arg::Phy2log, &|| i64_bytes(&call.in_phy2log));
            if let Some(c) = &call.in_logcnt {
                put(Arg::Logcnt, &|| i64_bytes(c));
            }
            if let Some(g) = &call.in_group_node {
                put(Arg::GroupNode, &|| i64_bytes(g));
            }
        }
        // The caller sets the statistics struct's size, wherever the pointer points.
        if let (Some(st), Some(o)) = (call.stats, at.iter().find(|(a, _)| *a == Arg::Stats)) {
            bytes[o.1..o.1 + 8].copy_from_slice(&st.struct_size.to_ne_bytes());
        }
    }
    let ptr = |arg: Arg| -> *mut u8 {
        if !call.present(arg) {
            return std::ptr::null_mut();
        }
        match call.ptr(arg) {
            Ptr::Null => std::ptr::null_mut(),
            Ptr::Dangling => std::ptr::without_provenance_mut(arg.align(func)),
            Ptr::High => std::ptr::without_provenance_mut(usize::MAX - 7),
            _ => {
                let o = at.iter().find(|(a, _)| *a == arg).expect("in arena").1;
                // SAFETY: inside the arena.
                unsafe { base.add(o) }
            }
        }
    };
    // SAFETY: the arena is ours.
    let before = unsafe { std::slice::from_raw_parts(base, len) }.to_vec();
    let s = call.sizes;
    // SAFETY: every pointer is NULL, dangling with a size the library must refuse, or inside the
    // arena with room for its declared size (the layout above).
    let status = unsafe {
        let load_f32 = ptr(Arg::Load).cast::<f32>().cast_const();
        let load_i64 = ptr(Arg::Load).cast::<i64>().cast_const();
        let opts = ptr(Arg::Opts).cast::<eplb_options>().cast_const();
        let i = |arg: Arg| ptr(arg).cast::<i64>();
        let ci = |arg: Arg| ptr(arg).cast::<i64>().cast_const();
        let mig = ptr(Arg::Stats).cast::<eplb_migration_stats>();
        let pst = ptr(Arg::Stats).cast::<eplb_plan_stats>();
        let lst = ptr(Arg::LayerStats).cast::<eplb_layer_stats>();
        let (l, e, r, g, n, p, w) = (
            s.layers, s.logical, s.replicas, s.groups, s.nodes, s.gpus, s.width,
        );
        use Arg::*;
        match func {
            Func::Packing => {
                eplb_balanced_packing(load_f32, l, e, p, opts, i(PackIndex), i(RankInPack))
            }
            Func::Replicate => {
                eplb_replicate_experts(load_f32, l, e, r, i(Phy2log), i(ReplicaRank), i(Logcnt))
            }
            Func::Rebalance => eplb_rebalance_experts(
                load_f32,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
            ),
            Func::RebalanceI64 => eplb_rebalance_experts_i64(
                load_i64,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
            ),
            Func::Replan => eplb_replan_experts(
                load_f32,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                ci(OldPhy2log),
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
                mig,
            ),
            Func::ReplanI64 => eplb_replan_experts_i64(
                load_i64,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                ci(OldPhy2log),
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
                mig,
            ),
            Func::Plan => eplb_plan_experts(
                load_f32,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                ci(OldPhy2log),
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
                i(GroupNode),
                mig,
            ),
            Func::PlanI64 => eplb_plan_experts_i64(
                load_i64,
                l,
                e,
                r,
                g,
                n,
                p,
                opts,
                ci(OldPhy2log),
                i(Phy2log),
                i(Log2phy),
                w,
                i(Logcnt),
                i(GroupNode),
                mig,
            ),
            Func::Evaluate => eplb_evaluate_plan(
                load_f32,
                l,
                e,
                r,
                g,
                n,
                p,
                ci(Phy2log),
                ci(Logcnt),
                ci(GroupNode),
                ci(OldPhy2log),
                pst,
                lst,
            ),
            Func::EvaluateI64 => eplb_evaluate_plan_i64(
                load_i64,
                l,
                e,
                r,
                g,
                n,
                p,
                ci(Phy2log),
                ci(Logcnt),
                ci(GroupNode),
                ci(OldPhy2log),
                pst,
                lst,
            ),
        }
    };
    // SAFETY: the arena is ours.
    let after = unsafe { std::slice::from_raw_parts(base, len) }.to_vec();
    drop(arena);
    let (message, message_len) = last_error();
    Outcome {
        status,
        message,
        message_len,
        layout: Layout { own, at },
        before,
        after,
    }
}

/// The calling thread's last error message, and the length `eplb_last_error_message(NULL, 0)`
/// reports.
pub fn last_error() -> (String, usize) {
    // SAFETY: NULL with length 0 is allowed.
    let len = unsafe { eplb_last_error_message(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; len + 1];
    // SAFETY: buf is writable for its length.
    let got = unsafe { eplb_last_error_message(buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
    assert_eq!(got, len, "eplb_last_error_message returned two lengths");
    assert_eq!(buf[len], 0, "eplb_last_error_message did not NUL-terminate");
    (String::from_utf8_lossy(&buf[..len]).into_owned(), len)
}

/// `eplb_status_str` as a Rust string.
pub fn status_str(status: i32) -> String {
    let p = eplb_status_str(status);
    assert!(!p.is_null(), "eplb_status_str({status}) returned NULL");
    // SAFETY: documented as a static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Which byte ranges a successful call may write: `(arg, start, end)` in the arena.
fn written_ranges(call: &Call, out: &Outcome) -> Vec<(Arg, usize, usize)> {
    let mut ranges = Vec::new();
    for &arg in call.func.args() {
        if !call.func.writes(arg) || !call.passed(arg) {
            continue;
        }
        let Some(offset) = out.layout.offset(arg) else {
            continue;
        };
        let (start, end) = if arg == Arg::Stats {
            let size = call.stats.map_or(0, |s| s.struct_size);
            let full = if call.func.is_evaluate() {
                PLAN_STATS_SIZE
            } else {
                MIGRATION_SIZE
            };
            (offset + 8, offset + size.min(full).max(8))
        } else {
            (offset, offset + call.declared_bytes(arg).unwrap_or(0))
        };
        ranges.push((arg, start, end));
    }
    ranges
}

/// Checks the C API contract for one outcome (see the module docs). `Err` describes the violation.
pub fn check(call: &Call, out: &Outcome) -> Result<(), String> {
    let ctx = || call.describe();
    if out.status == EPLB_STATUS_INTERNAL {
        return Err(format!(
            "EPLB_STATUS_INTERNAL (a panic inside eplb): {:?} for {}",
            out.message,
            ctx()
        ));
    }
    if !STATUSES.iter().any(|(s, _)| *s == out.status) {
        return Err(format!("unknown status {} for {}", out.status, ctx()));
    }
    if out.status != EPLB_STATUS_OK {
        if out.message.is_empty() {
            return Err(format!(
                "{} with an empty message for {}",
                status_name(out.status),
                ctx()
            ));
        }
        if let Some(i) = (0..out.before.len()).find(|&i| out.before[i] != out.after[i]) {
            return Err(format!(
                "{} ({}) but the call wrote byte {} ({}) for {}",
                status_name(out.status),
                out.message,
                i,
                region_of(out, i),
                ctx()
            ));
        }
        return Ok(());
    }
    // Success: nothing outside the written ranges changed.
    let ranges = written_ranges(call, out);
    for i in out.changed() {
        if !ranges.iter().any(|&(_, s, e)| (s..e).contains(&i)) {
            return Err(format!(
                "OK but the call wrote byte {i} ({}) outside its outputs for {}",
                region_of(out, i),
                ctx()
            ));
        }
    }
    // Non-empty outputs must have been passed as real buffers.
    for &(arg, s, e) in &ranges {
        if e > s && call.ptr(arg) != Ptr::Normal {
            return Err(format!(
                "OK although output {} was passed {:?} for {}",
                arg.c_name(call.func),
                call.ptr(arg),
                ctx()
            ));
        }
    }
    for &arg in call.func.args() {
        let declared = call.declared_bytes(arg).unwrap_or(usize::MAX);
        if call.present(arg) && declared > 0 {
            match call.ptr(arg) {
                Ptr::Normal => {}
                Ptr::Null if call.func.optional(arg) => {}
                Ptr::Alias(target, _) if !call.func.writes(arg) && !call.func.writes(target) => {}
                other => {
                    return Err(format!(
                        "OK although {} ({declared} bytes) was passed {other:?} for {}",
                        arg.c_name(call.func),
                        ctx()
                    ));
                }
            }
        }
    }
    match call.func {
        Func::Packing => check_packing(call, out),
        Func::Replicate => check_replication(call, out),
        Func::Evaluate | Func::EvaluateI64 => check_evaluation(call, out),
        _ => check_plan_outputs(call, out),
    }
    .map_err(|e| format!("{e} for {}", ctx()))
}

fn region_of(out: &Outcome, i: usize) -> String {
    for &(arg, o, len) in &out.layout.own {
        if (o..o + len).contains(&i) {
            return format!("{arg:?}+{}", i - o);
        }
    }
    "a canary gap".to_string()
}

fn check_packing(call: &Call, out: &Outcome) -> Result<(), String> {
    let s = call.sizes;
    let (l, items, packs) = (s.layers, s.logical, s.gpus);
    let pack = out.i64s(Arg::PackIndex, l * items);
    let rank = out.i64s(Arg::RankInPack, l * items);
    check_packing_rows(&pack, &rank, l, items, packs)
}

/// Every layer: pack ids in range, exactly `items / packs` items per pack, ranks a permutation.
pub fn check_packing_rows(
    pack: &[i64],
    rank: &[i64],
    l: usize,
    items: usize,
    packs: usize,
) -> Result<(), String> {
    let per = items / packs;
    for layer in 0..l {
        let mut seen = vec![vec![false; per]; packs];
        for i in 0..items {
            let (p, r) = (pack[layer * items + i], rank[layer * items + i]);
            if p < 0 || p as usize >= packs || r < 0 || r as usize >= per {
                return Err(format!(
                    "layer {layer} item {i}: pack {p} rank {r} out of range"
                ));
            }
            if std::mem::replace(&mut seen[p as usize][r as usize], true) {
                return Err(format!("layer {layer}: pack {p} rank {r} used twice"));
            }
        }
    }
    Ok(())
}

fn check_replication(call: &Call, out: &Outcome) -> Result<(), String> {
    let s = call.sizes;
    let (l, e, r) = (s.layers, s.logical, s.replicas);
    let phy = out.i64s(Arg::Phy2log, l * r);
    let rank = out.i64s(Arg::ReplicaRank, l * r);
    let cnt = out.i64s(Arg::Logcnt, l * e);
    for layer in 0..l {
        let row = &phy[layer * r..(layer + 1) * r];
        let rk = &rank[layer * r..(layer + 1) * r];
        let c = &cnt[layer * e..(layer + 1) * e];
        check_counts(row, c, e, r).map_err(|m| format!("layer {layer}: {m}"))?;
        let mut next = vec![0i64; e];
        for (slot, (&x, &k)) in row.iter().zip(rk).enumerate() {
            if slot < e && x != slot as i64 {
                return Err(format!(
                    "layer {layer}: slot {slot} holds {x}, not expert {slot}"
                ));
            }
            if k != next[x as usize] {
                return Err(format!(
                    "layer {layer}: slot {slot} replica_rank {k}, expected {}",
                    next[x as usize]
                ));
            }
            next[x as usize] += 1;
        }
    }
    Ok(())
}

/// `row` holds expert ids in `0..e`, `cnt` counts them, every count `>= 1`, the counts sum to `r`.
pub fn check_counts(row: &[i64], cnt: &[i64], e: usize, r: usize) -> Result<(), String> {
    let mut counted = vec![0i64; e];
    for (slot, &x) in row.iter().enumerate() {
        if x < 0 || x as usize >= e {
            return Err(format!("slot {slot} holds {x}, not an expert id"));
        }
        counted[x as usize] += 1;
    }
    if counted != cnt {
        return Err(format!(
            "logcnt {cnt:?} differs from phy2log's counts {counted:?}"
        ));
    }
    if let Some(x) = cnt.iter().position(|&c| c < 1) {
        return Err(format!("expert {x} has no replica"));
    }
    let sum: i64 = cnt.iter().sum();
    if sum != r as i64 {
        return Err(format!("logcnt sums to {sum}, not num_replicas {r}"));
    }
    Ok(())
}

/// Checks a whole plan: counts, `log2phy` (when given) and, where it applies, strict hierarchy and
/// `group_node`.
#[allow(clippy::too_many_arguments)]
pub fn check_plan(
    s: &Sizes,
    phy: &[i64],
    cnt: &[i64],
    log2phy: Option<&[i64]>,
    group_node: Option<&[i64]>,
    strict: bool,
) -> Result<(), String> {
    let (l, e, r, w) = (s.layers, s.logical, s.replicas, s.width);
    for layer in 0..l {
        let row = &phy[layer * r..(layer + 1) * r];
        let c = &cnt[layer * e..(layer + 1) * e];
        check_counts(row, c, e, r).map_err(|m| format!("layer {layer}: {m}"))?;
        if let Some(map) = log2phy {
            for x in 0..e {
                let entries = &map[(layer * e + x) * w..(layer * e + x + 1) * w];
                let k = c[x] as usize;
                let want: Vec<i64> = (0..r)
                    .filter(|&slot| row[slot] == x as i64)
                    .map(|slot| slot as i64)
                    .chain(std::iter::repeat_n(-1, w - k))
                    .collect();
                if entries != want.as_slice() {
                    return Err(format!(
                        "layer {layer}: log2phy[{x}] = {entries:?}, expected {want:?}"
                    ));
                }
            }
        }
        let (g, n) = (s.groups, s.nodes);
        if s.hierarchical() {
            let slots_per_node = r / n;
            let group_size = e / g;
            let mut home = vec![-1i64; g];
            for (slot, &x) in row.iter().enumerate() {
                let group = x as usize / group_size;
                let node = (slot / slots_per_node) as i64;
                if strict {
                    if home[group] == -1 {
                        home[group] = node;
                    } else if home[group] != node {
                        return Err(format!(
                            "layer {layer}: group {group} has replicas on nodes {} and {node} in a strict hierarchical plan",
                            home[group]
                        ));
                    }
                }
            }
            if let Some(gn) = group_node {
                let homes = &gn[layer * g..(layer + 1) * g];
                let mut per_node = vec![0usize; n];
                for (group, &h) in homes.iter().enumerate() {
                    if h < 0 || h as usize >= n {
                        return Err(format!("layer {layer}: group_node[{group}] = {h}"));
                    }
                    per_node[h as usize] += 1;
                    if strict && home[group] != h {
                        return Err(format!(
                            "layer {layer}: group_node[{group}] = {h} but its replicas are on node {}",
                            home[group]
                        ));
                    }
                }
                if per_node.iter().any(|&k| k != g / n) {
                    return Err(format!("layer {layer}: groups per node {per_node:?}"));
                }
            }
        } else if let Some(gn) = group_node {
            let homes = &gn[layer * g..(layer + 1) * g];
            if homes.iter().any(|&h| h != -1) {
                return Err(format!(
                    "layer {layer}: global policy but group_node = {homes:?}"
                ));
            }
        }
    }
    Ok(())
}

/// What replacing `old` by `new` moves: (weights_moved, weights_total, slots_changed,
/// layers_unchanged), computed independently of the library.
pub fn migration(new: &[i64], old: &[i64], s: &Sizes) -> [usize; 4] {
    let r = s.replicas;
    let k = r / s.gpus;
    let mut m = [0usize; 4];
    for layer in 0..s.layers {
        let nr = &new[layer * r..(layer + 1) * r];
        let or = &old[layer * r..(layer + 1) * r];
        for gpu in 0..s.gpus {
            let ng = &nr[gpu * k..(gpu + 1) * k];
            let og = &or[gpu * k..(gpu + 1) * k];
            for (i, x) in ng.iter().enumerate() {
                if !ng[..i].contains(x) {
                    m[1] += 1;
                    m[0] += usize::from(!og.contains(x));
                }
            }
        }
        let changed = nr.iter().zip(or).filter(|(a, b)| a != b).count();
        m[2] += changed;
        m[3] += usize::from(changed == 0);
    }
    m
}

fn check_plan_outputs(call: &Call, out: &Outcome) -> Result<(), String> {
    let s = call.sizes;
    let (l, e, r, g, w) = (s.layers, s.logical, s.replicas, s.groups, s.width);
    let phy = out.i64s(Arg::Phy2log, l * r);
    let cnt = out.i64s(Arg::Logcnt, l * e);
    let map = (call.passed(Arg::Log2phy)).then(|| out.i64s(Arg::Log2phy, l * e * w));
    let gn = (call.passed(Arg::GroupNode) && call.func.writes(Arg::GroupNode))
        .then(|| out.i64s(Arg::GroupNode, l * g));
    if map.is_some() && l > 0 {
        let needed = cnt.iter().copied().max().unwrap_or(0) as usize;
        if needed > w {
            return Err(format!(
                "OK with log2phy_width {w} below the largest count {needed}"
            ));
        }
    }
    let share = call
        .effective_opts()
        .map_or(0.0, |o| o.max_off_home_share_value());
    let strict = call.effective_old().is_none()
        && (share == 0.0 || call.algorithm() == EPLB_ALGORITHM_DEEPSEEK);
    check_plan(&s, &phy, &cnt, map.as_deref(), gn.as_deref(), strict)?;
    if let (Some(st), Some(o)) = (call.stats, out.layout.offset(Arg::Stats)) {
        let size = st.struct_size.min(MIGRATION_SIZE);
        // Whole fields inside struct_size (a partial last field is covered by the byte check).
        let got: Vec<usize> = (8..size)
            .step_by(8)
            .filter(|at| at + 8 <= size)
            .map(|at| read_usize(&out.after, o + at))
            .collect();
        let want = match out.old_plan(call) {
            Some(old) => migration(&phy, &old, &s),
            None => [0; 4],
        };
        if got.as_slice() != &want[..got.len()] {
            return Err(format!("migration stats {got:?}, expected {want:?}"));
        }
        if read_usize(&out.after, o) != st.struct_size {
            return Err("stats->struct_size was overwritten".into());
        }
    }
    Ok(())
}

/// Each GPU's load of one layer (f64), as DESIGN.md defines it.
pub fn gpu_loads(loads: &[f64], row: &[i64], cnt: &[i64], k: usize) -> Vec<f64> {
    row.chunks_exact(k)
        .map(|gpu| {
            gpu.iter()
                .map(|&x| loads[x as usize] / cnt[x as usize] as f64)
                .sum()
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

fn check_evaluation(call: &Call, out: &Outcome) -> Result<(), String> {
    let s = call.sizes;
    let (l, e, r) = (s.layers, s.logical, s.replicas);
    let k = r / s.gpus;
    let loads = call.loads.to_f64();
    let phy = &call.in_phy2log;
    let mut cnt = vec![0i64; l * e];
    for layer in 0..l {
        for &x in &phy[layer * r..(layer + 1) * r] {
            cnt[layer * e + x as usize] += 1;
        }
    }
    let mut layer_max = Vec::new();
    let mut dup_total = 0;
    for layer in 0..l {
        let row = &phy[layer * r..(layer + 1) * r];
        let gl = gpu_loads(
            &loads[layer * e..(layer + 1) * e],
            row,
            &cnt[layer * e..],
            k,
        );
        layer_max.push(gl.iter().copied().fold(0.0, f64::max));
        dup_total += row
            .chunks_exact(k)
            .map(|gpu| (0..k).filter(|&i| gpu[..i].contains(&gpu[i])).count())
            .sum::<usize>();
    }
    if call.passed(Arg::LayerStats) && l > 0 {
        let o = out.layout.offset(Arg::LayerStats).expect("layer_stats");
        for (layer, &max) in layer_max.iter().enumerate() {
            let at = o + layer * LAYER_STATS_SIZE;
            let f: Vec<f64> = (0..7).map(|i| read_f64(&out.after, at + 8 * i)).collect();
            if let Some(i) = f.iter().position(|v| !v.is_finite()) {
                return Err(format!("layer_stats[{layer}] field {i} is {}", f[i]));
            }
            if !close(f[0], max) {
                return Err(format!(
                    "layer_stats[{layer}].max_gpu_load {} != {max}",
                    f[0]
                ));
            }
            if !(f[2] > 0.0 && f[2] <= 1.0 + 1e-12) {
                return Err(format!("layer_stats[{layer}].balancedness {}", f[2]));
            }
            // The lower bound holds for any plan under the global policy.
            if (!s.hierarchical() || s.nodes == 1) && f[4] > max * (1.0 + 1e-9) {
                return Err(format!(
                    "layer_stats[{layer}].lower_bound {} above the plan's max {max}",
                    f[4]
                ));
            }
        }
    }
    let o = out.layout.offset(Arg::Stats).expect("stats");
    let size = call
        .stats
        .map_or(0, |st| st.struct_size)
        .min(PLAN_STATS_SIZE);
    if read_usize(&out.after, o) != call.stats.map_or(0, |st| st.struct_size) {
        return Err("stats->struct_size was overwritten".into());
    }
    let field = |at: usize| (at + 8 <= size).then(|| read_f64(&out.after, o + at));
    let count = |at: usize| (at + 8 <= size).then(|| read_usize(&out.after, o + at));
    for at in [8, 16, 24, 40, 48, 56, 64, 80, 88] {
        if let Some(v) = field(at).filter(|v| !v.is_finite()) {
            return Err(format!("plan stats field at byte {at} is {v}"));
        }
    }
    if let Some(b) = field(8).filter(|&b| !(b > 0.0 && b <= 1.0 + 1e-12)) {
        return Err(format!("balancedness {b}"));
    }
    if let Some(w) = count(32).filter(|&w| l > 0 && w >= l || l == 0 && w != 0) {
        return Err(format!("worst_layer {w} with {l} layers"));
    }
    if let Some(d) = count(72).filter(|&d| d != dup_total) {
        return Err(format!("duplicated_replicas {d}, expected {dup_total}"));
    }
    if let Some(old) = out.old_plan(call) {
        let m = migration(phy, &old, &s);
        for (at, want) in [(104, m[0]), (112, m[2]), (120, m[3])] {
            if let Some(got) = count(at).filter(|&got| got != want) {
                return Err(format!("plan stats at byte {at}: {got}, expected {want}"));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Random calls.

/// A source of random choices: libFuzzer's bytes or a seeded PRNG.
pub trait Source {
    /// A number in `0..n` (`n > 0`); any value when the source is exhausted.
    fn below(&mut self, n: u64) -> u64;

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bits32(&mut self) -> u32 {
        self.below(1 << 32) as u32
    }

    fn bits64(&mut self) -> u64 {
        (self.below(1 << 32) << 32) | self.below(1 << 32)
    }
}

/// SplitMix64: the small deterministic PRNG of the stable randomized tests.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Source for SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What the faults of a generated call allow.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Statuses the call certainly earns (one of them, unless it fails otherwise).
    pub faults: Vec<i32>,
    /// Statuses the call may earn (depending on the plan).
    pub maybe: Vec<i32>,
}

impl Expect {
    fn fault(&mut self, status: i32) {
        if !self.faults.contains(&status) {
            self.faults.push(status);
        }
    }

    fn maybe(&mut self, status: i32) {
        if !self.maybe.contains(&status) {
            self.maybe.push(status);
        }
    }

    /// Checks a status against the faults: OK exactly when there is no fault (unless a `maybe`
    /// status explains the failure), and a failure status among the faults or maybes.
    pub fn check(&self, status: i32, message: &str) -> Result<(), String> {
        let allowed = |s: i32| self.faults.contains(&s) || self.maybe.contains(&s);
        if status == EPLB_STATUS_OK {
            if self.faults.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "OK although the call has faults {:?}",
                self.faults
                    .iter()
                    .map(|&s| status_name(s))
                    .collect::<Vec<_>>()
            ));
        }
        if allowed(status) {
            return Ok(());
        }
        Err(format!(
            "{} ({message}) but the call's faults are {:?} and possible failures {:?}",
            status_name(status),
            self.faults
                .iter()
                .map(|&s| status_name(s))
                .collect::<Vec<_>>(),
            self.maybe
                .iter()
                .map(|&s| status_name(s))
                .collect::<Vec<_>>()
        ))
    }
}

/// A random f32 load: mostly valid, sometimes NaN, infinite, negative, huge, subnormal or -0.0.
pub fn gen_f32(src: &mut impl Source, special: bool) -> f32 {
    if !special {
        return match src.below(4) {
            0 => src.below(1000) as f32,
            1 => src.below(1 << 24) as f32 / 4096.0,
            2 => 0.0,
            _ => (src.below(50) + 1) as f32 * 10.0,
        };
    }
    match src.below(12) {
        0 => src.below(1000) as f32,
        1 => 0.0,
        2 => -0.0,
        3 => f32::from_bits(src.range(1, 0x007F_FFFF) as u32),
        4 => f32::MAX / (src.below(4) + 1) as f32,
        5 => f32::from_bits(0x7FC0_0000 | src.bits32() & 0x803F_FFFF),
        6 => f32::INFINITY,
        7 => f32::NEG_INFINITY,
        8 => -((src.below(1000) + 1) as f32),
        9 => f32::from_bits(0x8000_0000 | src.range(1, 0x007F_FFFF) as u32),
        10 => f32::from_bits(src.bits32()),
        _ => src.below(1 << 20) as f32 * 1e30,
    }
}

/// A random i64 load: mostly valid, sometimes huge or negative.
pub fn gen_i64(src: &mut impl Source, special: bool) -> i64 {
    if !special {
        return src.below(1000) as i64;
    }
    match src.below(7) {
        0 => src.below(1000) as i64,
        1 => 0,
        2 => i64::MAX - src.below(1000) as i64,
        3 => (1i64 << 53) + src.below(3) as i64,
        4 => -((src.below(1000) + 1) as i64),
        5 => i64::MIN,
        _ => src.bits64() as i64,
    }
}

fn invalid_f32(x: f32) -> bool {
    !x.is_finite() || x < 0.0
}

/// A random valid plan row set: every expert once, extra slots random, shuffled.
pub fn gen_plan(src: &mut impl Source, s: &Sizes) -> Vec<i64> {
    let (e, r) = (s.logical, s.replicas);
    let mut plan = Vec::with_capacity(s.layers * r);
    for _ in 0..s.layers {
        let mut row: Vec<i64> = (0..r)
            .map(|i| {
                if i < e {
                    i as i64
                } else {
                    src.below(e as u64) as i64
                }
            })
            .collect();
        for i in (1..r).rev() {
            let j = src.below(i as u64 + 1) as usize;
            row.swap(i, j);
        }
        plan.extend(row);
    }
    plan
}

/// Breaks a valid plan: an id out of range or an expert without a slot.
fn break_plan(src: &mut impl Source, plan: &mut [i64], s: &Sizes) {
    let (e, r) = (s.logical, s.replicas);
    let layer = src.below(s.layers as u64) as usize;
    let row = &mut plan[layer * r..(layer + 1) * r];
    if e >= 2 && src.chance(50) {
        let gone = src.below(e as u64) as i64;
        let other = (gone + 1) % e as i64;
        for x in row.iter_mut() {
            if *x == gone {
                *x = other;
            }
        }
    } else {
        let slot = src.below(r as u64) as usize;
        row[slot] = src.pick(&[-1, e as i64, i64::MAX, i64::MIN, e as i64 + 7]);
    }
}

/// Random sizes: valid for the function most of the time, small raw values otherwise.
fn gen_sizes(src: &mut impl Source, func: Func) -> Sizes {
    let layers = src.pick(&[0, 1, 1, 2, 2, 3, 4]);
    if src.chance(15) {
        let mut s = Sizes {
            layers,
            logical: src.below(9) as usize,
            replicas: src.below(13) as usize,
            groups: src.below(5) as usize,
            nodes: src.below(5) as usize,
            gpus: src.below(7) as usize,
            width: 0,
        };
        s.width = if src.chance(50) {
            s.replicas.saturating_sub(s.logical) + 1
        } else {
            src.below(6) as usize
        };
        return s;
    }
    match func {
        Func::Packing => {
            let packs = src.range(1, 8);
            Sizes::plan(layers, packs * src.range(1, 6), 0, 1, 1, packs)
        }
        Func::Replicate => {
            let e = src.range(1, 20);
            Sizes::plan(layers, e, e + src.below(12) as usize, 1, 1, 1)
        }
        _ => {
            let mut s = if src.chance(55) {
                let n = src.range(1, 4);
                let g = n * src.range(1, 3);
                let e = g * src.range(1, 4);
                let p = n * src.range(1, 3);
                let r = p * (e.div_ceil(p) + src.below(3) as usize);
                Sizes::plan(layers, e, r, g, n, p)
            } else {
                let n = src.range(2, 4);
                let mut g = src.range(1, 8);
                if g % n == 0 {
                    g += 1;
                }
                let e = src.range(1, 24);
                let p = src.range(1, 8);
                let r = p * (e.div_ceil(p) + src.below(3) as usize);
                Sizes::plan(layers, e, r, g, n, p)
            };
            if src.chance(20) {
                s.width = src.below((s.width + 2) as u64) as usize;
            } else if src.chance(10) {
                s.width += src.below(40) as usize;
            }
            s
        }
    }
}

/// This harness's model of the size rules: the statuses the sizes certainly earn.
pub fn size_faults(func: Func, s: &Sizes) -> Vec<i32> {
    let mut f = Vec::new();
    match func {
        Func::Packing => {
            if s.logical == 0 || s.gpus == 0 {
                f.push(EPLB_STATUS_ZERO_SIZE);
            } else if s.logical % s.gpus != 0 {
                f.push(EPLB_STATUS_NOT_DIVISIBLE);
            }
        }
        Func::Replicate => {
            if s.logical == 0 || s.replicas == 0 {
                f.push(EPLB_STATUS_ZERO_SIZE);
            } else if s.replicas < s.logical {
                f.push(EPLB_STATUS_TOO_FEW_REPLICAS);
            }
        }
        _ => {
            if [s.logical, s.replicas, s.groups, s.nodes, s.gpus].contains(&0) {
                f.push(EPLB_STATUS_ZERO_SIZE);
                return f;
            }
            if s.replicas < s.logical {
                f.push(EPLB_STATUS_TOO_FEW_REPLICAS);
            }
            if s.replicas % s.gpus != 0
                || (s.hierarchical() && (s.logical % s.groups != 0 || s.gpus % s.nodes != 0))
            {
                f.push(EPLB_STATUS_NOT_DIVISIBLE);
            }
        }
    }
    f
}

/// Random options bytes: the defaults, DeepSeek, or raw fields and `struct_size`.
pub fn gen_opts(src: &mut impl Source) -> OptsBytes {
    let mut o = OptsBytes::defaults();
    match src.below(4) {
        0 => {}
        1 => o.set_i32(8, EPLB_ALGORITHM_DEEPSEEK),
        2 => {
            o.set_i32(8, src.pick(&[0, 1]));
            o.set_i32(12, src.pick(&[0, 1, 2, 3]));
            o.set_f64(16, src.pick(&[0.0, 0.01, 0.5]));
            if o.algorithm_value() == EPLB_ALGORITHM_REFINED {
                o.set_f64(24, src.pick(&[0.0, 0.1, 1.0]));
            }
        }
        _ => {
            let raw = src.bits32() as i32;
            o.set_i32(8, src.pick(&[0, 1, 1, 2, -1, i32::MAX, raw]));
            let raw = src.bits32() as i32;
            o.set_i32(12, src.pick(&[0, 1, 2, 3, 4, -1, raw]));
            let raw = f64::from_bits(src.bits64());
            o.set_f64(
                16,
                src.pick(&[0.0, 0.05, -0.1, f64::NAN, f64::INFINITY, raw]),
            );
            let raw = f64::from_bits(src.bits64());
            o.set_f64(24, src.pick(&[0.0, 0.25, 1.0, 1.5, -0.1, f64::NAN, raw]));
            let raw = src.below(5000) as usize;
            let size = src.pick(&[
                OPTS_SIZE,
                OPTS_SIZE,
                0,
                8,
                12,
                16,
                24,
                OPTS_SIZE + 8,
                64,
                MAX_STRUCT_SIZE,
                MAX_STRUCT_SIZE + 1,
                usize::MAX,
                raw,
            ]);
            o.set_struct_size(size);
            if size > OPTS_SIZE && size <= MAX_STRUCT_SIZE && src.chance(50) {
                let at = src.range(OPTS_SIZE, size - 1);
                o.bytes[at] = src.range(1, 255) as u8;
            }
        }
    }
    o
}

/// A random call of `func` and what its faults allow ([`model`]).
pub fn generate(src: &mut impl Source, func: Func) -> (Call, Expect) {
    let call = if src.chance(4) {
        gen_overflow(src, func)
    } else {
        gen_call(src, func)
    };
    let expect = model(&call);
    (call, expect)
}

fn gen_call(src: &mut impl Source, func: Func) -> Call {
    let s = gen_sizes(src, func);
    let special = src.chance(30);
    let n = s.layers * s.logical;
    let loads = if func.is_i64() {
        Loads::I64((0..n).map(|_| gen_i64(src, special)).collect())
    } else {
        Loads::F32((0..n).map(|_| gen_f32(src, special)).collect())
    };
    let mut call = Call::new(func, s, loads);
    if func.has_opts() && src.chance(60) {
        call.opts = Some(gen_opts(src));
    }
    let shape_ok = size_faults(func, &s).is_empty();
    if matches!(
        func,
        Func::Replan | Func::ReplanI64 | Func::Plan | Func::PlanI64
    ) {
        let required = matches!(func, Func::Replan | Func::ReplanI64);
        call.old_phy2log = if !shape_ok {
            required.then(|| vec![0; s.layers * s.replicas])
        } else if required || src.chance(50) {
            let mut old = gen_plan(src, &s);
            if s.layers > 0 && src.chance(15) {
                break_plan(src, &mut old, &s);
            }
            Some(old)
        } else {
            None
        };
    }
    if func.is_evaluate() {
        if shape_ok {
            call.in_phy2log = gen_plan(src, &s);
            if s.layers > 0 && src.chance(10) {
                let mut p = call.in_phy2log.clone();
                break_plan(src, &mut p, &s);
                call.in_phy2log = p;
            }
            if src.chance(50) {
                let mut cnt = vec![0i64; n];
                for layer in 0..s.layers {
                    for &x in &call.in_phy2log[layer * s.replicas..(layer + 1) * s.replicas] {
                        if x >= 0 && (x as usize) < s.logical {
                            cnt[layer * s.logical + x as usize] += 1;
                        }
                    }
                }
                if n > 0 && src.chance(15) {
                    let i = src.below(n as u64) as usize;
                    cnt[i] = cnt[i].wrapping_add(src.pick(&[1, -1, i64::MAX]));
                }
                call.in_logcnt = Some(cnt);
            }
            if src.chance(40) {
                let mut gn: Vec<i64> = (0..s.layers * s.groups)
                    .map(|i| (i % s.groups % s.nodes) as i64)
                    .collect();
                if !gn.is_empty() && src.chance(20) {
                    let i = src.below(gn.len() as u64) as usize;
                    gn[i] = src.pick(&[-1, s.nodes as i64, i64::MAX]);
                }
                call.in_group_node = Some(gn);
            }
            if src.chance(30) {
                let mut old = gen_plan(src, &s);
                if s.layers > 0 && src.chance(15) {
                    break_plan(src, &mut old, &s);
                }
                call.old_phy2log = Some(old);
            }
        } else {
            call.in_phy2log = vec![0; s.layers * s.replicas];
        }
        call.out_layer_stats = src.chance(70);
    }
    if matches!(func, Func::Plan | Func::PlanI64) {
        call.out_log2phy = src.chance(60);
        call.out_group_node = src.chance(60);
    }
    if func.args().contains(&Arg::Stats) {
        let full = if func.is_evaluate() {
            PLAN_STATS_SIZE
        } else {
            MIGRATION_SIZE
        };
        let absent = if func.optional(Arg::Stats) {
            src.chance(40)
        } else {
            // Required by eplb_evaluate_plan: sometimes NULL all the same.
            src.chance(4)
        };
        call.stats = if absent {
            None
        } else if src.chance(85) {
            Some(StatsSpec::new(src.pick(&[
                full,
                full,
                STATS_MIN_SIZE,
                24,
                full + 16,
                64,
            ])))
        } else {
            let raw = src.below(5000) as usize;
            Some(StatsSpec::new(src.pick(&[
                0,
                8,
                15,
                MAX_STRUCT_SIZE,
                MAX_STRUCT_SIZE + 1,
                usize::MAX,
                raw,
            ])))
        };
    }
    // Pointer faults.
    if src.chance(25) {
        let args: Vec<Arg> = func
            .args()
            .iter()
            .copied()
            .filter(|&a| call.present(a))
            .collect();
        let arg = src.pick(&args);
        let bytes = call.declared_bytes(arg).unwrap_or(0);
        match src.below(4) {
            0 => call = call.with_ptr(arg, Ptr::Null),
            1 => {
                let shift = src.range(1, arg.align(func) - 1);
                call = call.with_ptr(arg, Ptr::Misaligned(shift));
            }
            2 => {
                // Point an output inside another buffer.
                let outs: Vec<Arg> = args.iter().copied().filter(|&a| func.writes(a)).collect();
                if outs.is_empty() {
                    return call;
                }
                let out = src.pick(&outs);
                let targets: Vec<Arg> = args
                    .iter()
                    .copied()
                    .filter(|&a| a != out && call.declared_bytes(a).unwrap_or(0) > 0)
                    .filter(|&a| !(KNOWN_BUG_OPTS_OVERLAP && a == Arg::Opts))
                    .collect();
                if !targets.is_empty() {
                    let target = src.pick(&targets);
                    let elems = call.declared_bytes(target).unwrap_or(0) / call.elem(target);
                    let mut k = src.below(elems as u64) as usize;
                    // Keep the alias aligned for the output's element type.
                    k -= k % (out.align(func) / call.elem(target)).max(1);
                    call = call.with_ptr(out, Ptr::Alias(target, k));
                }
            }
            _ => {
                // Empty buffers may be anything non-NULL: nothing is read or written.
                if bytes == 0 && arg != Arg::Stats && arg != Arg::Opts {
                    call = call.with_ptr(arg, Ptr::Dangling);
                }
            }
        }
    }
    call
}

fn gen_overflow(src: &mut impl Source, func: Func) -> Call {
    let huge = usize::MAX / src.pick(&[2, 3, 4, 8, 16]) + src.below(3) as usize;
    let mut s = match func {
        Func::Packing => Sizes::plan(huge, 4, 0, 1, 1, 2),
        Func::Replicate => Sizes::plan(huge, 2, 4, 1, 1, 1),
        _ => Sizes::plan(huge, 4, 8, 2, 2, 4),
    };
    if func.makes_plan() && src.chance(50) {
        // Only the log2phy product overflows.
        s.layers = src.range(1, 3);
        s.width = usize::MAX / (s.layers * s.logical) + 1 + src.below(5) as usize;
    }
    let n = if s.layers < 8 {
        s.layers * s.logical
    } else {
        0
    };
    let mut call = Call::new(func, s, Loads::I64(vec![1; n]));
    if matches!(func, Func::Replan | Func::ReplanI64) {
        call.old_phy2log = Some(Vec::new());
    }
    if matches!(func, Func::Plan | Func::PlanI64) {
        call.out_log2phy = true;
    }
    call.in_phy2log = Vec::new();
    call.all_dangling()
}

/// Whether `plan` (`[num_layers][num_replicas]`) is a plan: ids in range, every expert a slot.
pub fn plan_is_valid(plan: &[i64], s: &Sizes) -> bool {
    let (e, r) = (s.logical, s.replicas);
    plan.chunks_exact(r.max(1)).take(s.layers).all(|row| {
        let mut seen = vec![false; e];
        for &x in row {
            if x < 0 || x as usize >= e {
                return false;
            }
            seen[x as usize] = true;
        }
        seen.iter().all(|&b| b)
    })
}

/// This harness's model of the documented rules: the statuses a call certainly earns (`faults`)
/// and those it may earn (`maybe`, e.g. `log2phy_width` between the pigeonhole bound and
/// `num_replicas - num_logical + 1`, which only the plan decides).
pub fn model(call: &Call) -> Expect {
    let mut x = Expect::default();
    let func = call.func;
    let s = call.sizes;
    let in_arena = |arg: Arg| call.present(arg) && matches!(call.ptr(arg), Ptr::Normal);
    // Sizes.
    let size_faults = size_faults(func, &s);
    let shape_ok = size_faults.is_empty();
    for f in size_faults {
        x.fault(f);
    }
    for &arg in func.args() {
        let checked = call.present(arg) || arg == Arg::Phy2log || arg == Arg::Load;
        if checked && arg != Arg::Opts && arg != Arg::Stats {
            match call.declared_bytes(arg) {
                Some(b) if b <= isize::MAX as usize => {}
                _ => x.fault(EPLB_STATUS_SIZE_OVERFLOW),
            }
        }
    }
    // Pointers.
    for &arg in func.args() {
        if !call.present(arg) {
            if arg == Arg::Stats && func.is_evaluate() {
                x.fault(EPLB_STATUS_NULL_POINTER);
            }
            continue;
        }
        let bytes = call.declared_bytes(arg).unwrap_or(usize::MAX);
        match call.ptr(arg) {
            Ptr::Normal | Ptr::Dangling | Ptr::High => {}
            Ptr::Null => {
                let required = !func.optional(arg);
                if required && (bytes > 0 || arg == Arg::Stats) {
                    x.fault(EPLB_STATUS_NULL_POINTER);
                }
            }
            Ptr::Misaligned(_) => x.fault(EPLB_STATUS_MISALIGNED_POINTER),
            Ptr::Alias(target, _) => {
                if bytes > 0 {
                    x.fault(EPLB_STATUS_OVERLAPPING_BUFFERS);
                }
                if arg == Arg::Stats || target == Arg::Stats {
                    // The struct_size the caller writes lands in the other buffer (or comes from
                    // it), which may break that buffer's data or the struct.
                    x.maybe(EPLB_STATUS_INVALID_PLAN);
                    x.maybe(EPLB_STATUS_INVALID_LOAD);
                    x.maybe(EPLB_STATUS_INVALID_OPTIONS);
                }
                if target == Arg::Opts {
                    x.maybe(EPLB_STATUS_INVALID_OPTIONS);
                }
            }
        }
    }
    let nullified = |arg: Arg| call.present(arg) && call.ptr(arg) == Ptr::Null;
    // Options.
    let mut opts_ok = true;
    if call.opts.as_ref().is_some_and(|o| o.fault().is_some()) && !nullified(Arg::Opts) {
        opts_ok = false;
        x.fault(EPLB_STATUS_INVALID_OPTIONS);
    }
    // Statistics structs.
    if call.stats.is_some_and(|st| !st.valid()) && !nullified(Arg::Stats) {
        x.fault(EPLB_STATUS_INVALID_OPTIONS);
    }
    if !in_arena(Arg::Load) {
        return x;
    }
    // Loads.
    let bad_load = match &call.loads {
        Loads::F32(v) => v.iter().any(|&v| invalid_f32(v)),
        Loads::I64(v) => v.iter().any(|&v| v < 0),
    };
    if bad_load && s.layers * s.logical > 0 {
        x.fault(EPLB_STATUS_INVALID_LOAD);
    }
    if call.algorithm() == EPLB_ALGORITHM_DEEPSEEK
        && !nullified(Arg::Opts)
        && s.logical > 0
        && !bad_load
    {
        let f32s: Vec<f32> = match &call.loads {
            Loads::F32(v) => v.clone(),
            Loads::I64(v) => v.iter().map(|&x| x as f32).collect(),
        };
        let overflow = f32s
            .chunks(s.logical)
            .any(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() > f64::from(f32::MAX));
        if overflow && func.makes_plan() && opts_ok {
            x.fault(EPLB_STATUS_INVALID_LOAD);
        } else if overflow {
            x.maybe(EPLB_STATUS_INVALID_LOAD);
        }
    }
    if !shape_ok || s.layers == 0 {
        return x;
    }
    // Plans given as input.
    let used = |arg: Arg| call.present(arg) && !nullified(arg);
    if used(Arg::OldPhy2log)
        && in_arena(Arg::OldPhy2log)
        && !plan_is_valid(call.old_phy2log.as_deref().unwrap_or(&[]), &s)
    {
        x.fault(EPLB_STATUS_INVALID_PLAN);
    }
    if func.is_evaluate() {
        let valid = plan_is_valid(&call.in_phy2log, &s);
        if !valid {
            x.fault(EPLB_STATUS_INVALID_PLAN);
        }
        if valid && used(Arg::Logcnt) && in_arena(Arg::Logcnt) {
            let mut cnt = vec![0i64; s.layers * s.logical];
            for layer in 0..s.layers {
                for &v in &call.in_phy2log[layer * s.replicas..(layer + 1) * s.replicas] {
                    cnt[layer * s.logical + v as usize] += 1;
                }
            }
            if call.in_logcnt.as_deref() != Some(cnt.as_slice()) {
                x.fault(EPLB_STATUS_INVALID_PLAN);
            }
        }
        if s.hierarchical()
            && used(Arg::GroupNode)
            && in_arena(Arg::GroupNode)
            && call
                .in_group_node
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|&h| h < 0 || h >= s.nodes as i64)
        {
            x.fault(EPLB_STATUS_INVALID_PLAN);
        }
    }
    // log2phy_width: at least ceil(R / E) (pigeonhole); R - E + 1 always suffices.
    if func.makes_plan() && (used(Arg::Log2phy) || !func.optional(Arg::Log2phy)) {
        let (e, r, w) = (s.logical, s.replicas, s.width);
        if w < r.div_ceil(e) {
            x.fault(EPLB_STATUS_WIDTH_TOO_SMALL);
        } else if w < r - e + 1 {
            x.maybe(EPLB_STATUS_WIDTH_TOO_SMALL);
        }
    }
    x
}

/// Generates, runs and checks one call; `Err` describes a contract violation.
pub fn fuzz_one(src: &mut impl Source, func: Func) -> Result<Outcome, String> {
    let (call, expect) = generate(src, func);
    let out = run(&call);
    check(&call, &out)?;
    expect
        .check(out.status, &out.message)
        .map_err(|e| format!("{e} for {}", call.describe()))?;
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// The functions without buffers: eplb_status_str, eplb_last_error_message, eplb_options_init,
// eplb_version, and raw eplb_options bytes. Each panics on a contract violation.

/// One random check of the functions without buffers.
pub fn misc_one(src: &mut impl Source) {
    match src.below(5) {
        0 => misc_status_str(src),
        1 => misc_last_error(src),
        2 => misc_options_init(src),
        3 => misc_version(),
        _ => misc_raw_options(src),
    }
}

fn misc_status_str(src: &mut impl Source) {
    let code = if src.chance(50) {
        src.below(20) as i32 - 3
    } else {
        src.bits32() as i32
    };
    let text = status_str(code);
    let known = (EPLB_STATUS_OK..=EPLB_STATUS_OUT_OF_MEMORY).contains(&code);
    assert!(!text.is_empty(), "empty text for {code}");
    assert_eq!(
        text == "unknown status",
        !known,
        "eplb_status_str({code}) = {text:?}"
    );
    // Static: the same pointer every time.
    assert_eq!(eplb_status_str(code), eplb_status_str(code));
}

fn misc_last_error(src: &mut impl Source) {
    // Produce a message of varying length: a NaN load at a chosen position names its indices.
    let layers = src.range(1, 40);
    let items = src.range(1, 30);
    let mut weight = vec![1.0f32; layers * items];
    let at = src.below(weight.len() as u64) as usize;
    weight[at] = f32::NAN;
    let mut out = vec![0i64; 2 * layers * items];
    let (a, b) = out.split_at_mut(layers * items);
    // SAFETY: buffers of layers * items elements.
    let status = unsafe {
        eplb_balanced_packing(
            weight.as_ptr(),
            layers,
            items,
            1,
            std::ptr::null(),
            a.as_mut_ptr(),
            b.as_mut_ptr(),
        )
    };
    assert_eq!(status, EPLB_STATUS_INVALID_LOAD);
    let expected = format!(
        "weight[{}][{}] = NaN is invalid: loads must not be NaN",
        at / items,
        at % items
    );
    let (full, len) = last_error();
    assert_eq!(full, expected);
    // A successful call leaves it alone.
    if src.chance(30) {
        let w = [1.0f32, 2.0];
        let mut p = [0i64; 2];
        let mut r = [0i64; 2];
        // SAFETY: two-element buffers.
        let ok = unsafe {
            eplb_balanced_packing(
                w.as_ptr(),
                1,
                2,
                1,
                std::ptr::null(),
                p.as_mut_ptr(),
                r.as_mut_ptr(),
            )
        };
        assert_eq!(ok, EPLB_STATUS_OK);
        assert_eq!(last_error().0, expected);
    }
    // Any buffer length: truncated, NUL-terminated, nothing written past buf_len.
    let buf_len = src.range(0, len + 8);
    let mut buf = vec![0xEEu8; buf_len + 16];
    let null = buf_len == 0 && src.chance(50);
    let ptr = if null {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: buf is writable for buf_len (+16) bytes, or NULL with length 0.
    let got = unsafe { eplb_last_error_message(ptr, buf_len) };
    assert_eq!(got, len);
    if buf_len > 0 {
        let n = len.min(buf_len - 1);
        assert_eq!(&buf[..n], &expected.as_bytes()[..n]);
        assert_eq!(buf[n], 0, "not NUL-terminated");
        assert!(
            buf[n + 1..].iter().all(|&b| b == 0xEE),
            "wrote past the NUL"
        );
    } else {
        assert!(buf.iter().all(|&b| b == 0xEE), "wrote with buf_len 0");
    }
}

fn misc_options_init(src: &mut impl Source) {
    let mut arena = vec![0x5Au64; 16];
    let shift = src.below(16) as usize;
    let base = arena.as_mut_ptr().cast::<u8>();
    let before: Vec<u64> = arena.clone();
    if src.chance(10) {
        // SAFETY: NULL is documented as a no-op.
        unsafe { eplb_options_init(std::ptr::null_mut()) };
        return;
    }
    // SAFETY: 128 bytes; the struct (32 bytes) fits at any shift below 16.
    unsafe { eplb_options_init(base.add(shift).cast()) };
    // SAFETY: reading our own arena.
    let after = unsafe { std::slice::from_raw_parts(base, 128) }.to_vec();
    let before: Vec<u8> = before.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if shift % 8 != 0 {
        assert_eq!(
            after, before,
            "eplb_options_init wrote through a misaligned pointer"
        );
        return;
    }
    let defaults = OptsBytes::defaults();
    assert_eq!(&after[shift..shift + 32], &defaults.bytes[..]);
    assert_eq!(&after[..shift], &before[..shift]);
    assert_eq!(&after[shift + 32..], &before[shift + 32..]);
}

fn misc_version() {
    let p = eplb_version();
    // SAFETY: documented static NUL-terminated text.
    let v = unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap();
    assert_eq!(
        v,
        format!("{EPLB_VERSION_MAJOR}.{EPLB_VERSION_MINOR}.{EPLB_VERSION_PATCH}")
    );
}

fn misc_raw_options(src: &mut impl Source) {
    let mut call = Call::valid(
        src.pick(&[Func::Rebalance, Func::Packing, Func::Plan]),
        Sizes::plan(src.range(0, 2), 8, 12, 4, 2, 4),
    );
    let len = src.range(0, 72);
    let mut bytes: Vec<u8> = (0..len).map(|_| src.below(256) as u8).collect();
    bytes.resize(len.max(8), 0);
    let mut opts = OptsBytes { bytes };
    let size = if src.chance(60) {
        src.pick(&[
            0,
            8,
            11,
            12,
            16,
            20,
            24,
            31,
            32,
            40,
            64,
            4096,
            4097,
            usize::MAX,
        ])
    } else {
        opts.struct_size()
    };
    opts.set_struct_size(size);
    call.opts = Some(opts);
    let expect = model(&call);
    let out = run(&call);
    if let Err(e) = check(&call, &out).and_then(|()| expect.check(out.status, &out.message)) {
        panic!("contract violation: {e} for {}", call.describe());
    }
}
