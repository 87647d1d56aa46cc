//! The C API input matrix: every exported function called directly through its `extern "C"`
//! symbol (from the rlib) with every class of bad input the C API conventions name (DESIGN.md §3).
//!
//! The matrix is one table ([`cases`]): each row is a call, the exact status it must return, and
//! substrings its `eplb_last_error_message` must contain (the argument and the constraint). Every
//! call runs through the shared harness (`fuzz/src/harness.rs`): all buffers live in one arena
//! filled with a sentinel pattern, with canary gaps between them; on error the whole arena must be
//! byte-for-byte unchanged, on success nothing outside the outputs may change and the outputs must
//! be a valid plan / packing / replication / statistics record.
//!
//! The README's hardening table is derived from the rows (`input -> status -> message shape`):
//! `EPLB_BLESS=1 cargo test --release --test ffi_matrix readme` rewrites it, and
//! `readme_table_is_current` fails when it is stale.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::ffi::{CStr, c_char};

use eplb::ffi::*;
use harness::*;

/// Extra checks of a successful call.
type Verify = fn(&Call, &Outcome) -> Result<(), String>;
/// A size argument's name and the field of [`Sizes`] that carries it.
type SizeArg = (&'static str, fn(&mut Sizes) -> &mut usize);

/// One row of the matrix.
struct Case {
    /// The README "input" column.
    input: &'static str,
    /// The README "message shape" column.
    shape: &'static str,
    call: Call,
    status: i32,
    /// Substrings the message must contain.
    needles: Vec<String>,
    /// Extra checks of a successful call.
    verify: Option<Verify>,
}

fn case(
    input: &'static str,
    shape: &'static str,
    call: Call,
    status: i32,
    needles: &[&str],
) -> Case {
    Case {
        input,
        shape,
        call,
        status,
        needles: needles.iter().map(|s| s.to_string()).collect(),
        verify: None,
    }
}

fn ok(input: &'static str, call: Call) -> Case {
    case(input, "-", call, EPLB_STATUS_OK, &[])
}

/// The base shape of each function: valid, small, hierarchical for the planners.
fn shape(func: Func) -> Sizes {
    match func {
        Func::Packing => Sizes {
            layers: 2,
            logical: 6,
            replicas: 0,
            groups: 1,
            nodes: 1,
            gpus: 3,
            width: 1,
        },
        Func::Replicate => Sizes::plan(2, 4, 7, 1, 1, 1),
        _ => Sizes::plan(2, 8, 12, 4, 2, 4),
    }
}

fn base(func: Func) -> Call {
    Call::valid(func, shape(func))
}

fn with_sizes(func: Func, sizes: Sizes) -> Call {
    Call::valid(func, sizes)
}

/// The size arguments of a function, with the field of [`Sizes`] that carries each.
fn size_args(func: Func) -> Vec<SizeArg> {
    match func {
        Func::Packing => vec![
            ("num_items", |s| &mut s.logical),
            ("num_packs", |s| &mut s.gpus),
        ],
        Func::Replicate => vec![
            ("num_logical", |s| &mut s.logical),
            ("num_physical", |s| &mut s.replicas),
        ],
        _ => vec![
            ("num_logical", |s| &mut s.logical),
            ("num_replicas", |s| &mut s.replicas),
            ("num_groups", |s| &mut s.groups),
            ("num_nodes", |s| &mut s.nodes),
            ("num_gpus", |s| &mut s.gpus),
        ],
    }
}

fn planners() -> impl Iterator<Item = Func> {
    Func::ALL.into_iter().filter(|f| f.makes_plan())
}

fn with_opts(mut call: Call, opts: OptsBytes) -> Call {
    call.opts = Some(opts);
    call
}

fn set_load(call: &mut Call, index: usize, f: f32, i: i64) {
    match &mut call.loads {
        Loads::F32(v) => v[index] = f,
        Loads::I64(v) => v[index] = i,
    }
}

fn fill_loads(call: &mut Call, f: f32, i: i64) {
    match &mut call.loads {
        Loads::F32(v) => v.iter_mut().for_each(|x| *x = f),
        Loads::I64(v) => v.iter_mut().for_each(|x| *x = i),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn nothing_written(_: &Call, out: &Outcome) -> Result<(), String> {
    match out.changed().first() {
        None => Ok(()),
        Some(i) => Err(format!("num_layers = 0 but byte {i} changed")),
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    null_pointers(&mut v);
    zero_sizes(&mut v);
    divisibility(&mut v);
    loads(&mut v);
    size_overflow(&mut v);
    widths(&mut v);
    misaligned(&mut v);
    overlaps(&mut v);
    options(&mut v);
    stats_structs(&mut v);
    invalid_plans(&mut v);
    small_shapes(&mut v);
    v
}

fn null_pointers(v: &mut Vec<Case>) {
    for func in Func::ALL {
        for &arg in func.args() {
            let call = base(func);
            if !call.present(arg) {
                continue;
            }
            let name = arg.c_name(func);
            if func.optional(arg) {
                v.push(ok(
                    "NULL for an optional argument (`opts`, `stats`, `old_phy2log`/`log2phy`/`group_node` of `eplb_plan_experts`, `logcnt`/`group_node`/`old_phy2log`/`layer_stats` of `eplb_evaluate_plan`)",
                    call.with_ptr(arg, Ptr::Null),
                ));
                continue;
            }
            v.push(case(
                "NULL pointer with a non-zero size",
                "`<arg> is NULL but must point to <n> elements`",
                call.with_ptr(arg, Ptr::Null),
                EPLB_STATUS_NULL_POINTER,
                &[name, "is NULL"],
            ));
        }
        // Every pointer NULL with num_layers = 0: nothing to read or write.
        if !func.is_evaluate() {
            let mut s = shape(func);
            s.layers = 0;
            let mut call = with_sizes(func, s);
            for &arg in func.args() {
                call = call.with_ptr(arg, Ptr::Null);
            }
            v.push(ok("`num_layers = 0`, every pointer NULL", call));
        }
    }
    let mut call = base(Func::Evaluate);
    call.stats = None;
    v.push(case(
        "NULL pointer with a non-zero size",
        "`<arg> is NULL but must point to <n> elements`",
        call,
        EPLB_STATUS_NULL_POINTER,
        &["stats", "is NULL"],
    ));
}

fn zero_sizes(v: &mut Vec<Case>) {
    for func in Func::ALL {
        for (name, field) in size_args(func) {
            let mut s = shape(func);
            *field(&mut s) = 0;
            v.push(case(
                "a size argument zero (`num_logical`, `num_replicas`, `num_groups`, `num_nodes`, `num_gpus`, `num_items`, `num_packs`, `num_physical`)",
                "`<arg> must be at least 1, got 0`",
                with_sizes(func, s),
                EPLB_STATUS_ZERO_SIZE,
                &[name, "must be at least 1, got 0"],
            ));
        }
        let mut s = shape(func);
        s.layers = 0;
        let mut c = ok("`num_layers = 0` (valid buffers)", with_sizes(func, s));
        if !func.is_evaluate() {
            c.verify = Some(nothing_written);
        }
        v.push(c);
    }
}

fn divisibility(v: &mut Vec<Case>) {
    for func in Func::ALL.into_iter().filter(|f| f.is_planning_shape()) {
        v.push(case(
            "`num_replicas % num_gpus != 0`",
            "`num_replicas (R) must be a multiple of num_gpus (P)`",
            with_sizes(func, Sizes::plan(2, 8, 12, 3, 2, 5)),
            EPLB_STATUS_NOT_DIVISIBLE,
            &["num_replicas (12)", "must be a multiple of num_gpus (5)"],
        ));
        v.push(case(
            "hierarchical (`num_groups % num_nodes == 0`) and `num_logical % num_groups != 0`",
            "`num_logical (E) must be a multiple of num_groups (G) (the hierarchical policy applies ...)`",
            with_sizes(func, Sizes::plan(2, 9, 12, 4, 2, 4)),
            EPLB_STATUS_NOT_DIVISIBLE,
            &["num_logical (9)", "multiple of num_groups (4)", "hierarchical"],
        ));
        v.push(case(
            "hierarchical and `num_gpus % num_nodes != 0`",
            "`num_gpus (P) must be a multiple of num_nodes (N) (the hierarchical policy applies ...)`",
            with_sizes(func, Sizes::plan(2, 8, 12, 4, 4, 6)),
            EPLB_STATUS_NOT_DIVISIBLE,
            &["num_gpus (6)", "multiple of num_nodes (4)", "hierarchical"],
        ));
        v.push(ok(
            "global policy (`num_groups % num_nodes != 0`) with `num_logical % num_groups != 0` and `num_gpus % num_nodes != 0`",
            with_sizes(func, Sizes::plan(2, 9, 12, 4, 3, 4)),
        ));
        v.push(case(
            "`num_replicas < num_logical`",
            "`num_replicas (R) must be >= num_logical (E): every expert needs a slot`",
            with_sizes(func, Sizes::plan(2, 8, 4, 4, 2, 4)),
            EPLB_STATUS_TOO_FEW_REPLICAS,
            &["num_replicas (4)", "must be >= num_logical (8)"],
        ));
    }
    let mut s = shape(Func::Packing);
    s.logical = 7;
    v.push(case(
        "`num_items % num_packs != 0` (packing)",
        "`num_items (n) must be a multiple of num_packs (p)`",
        with_sizes(Func::Packing, s),
        EPLB_STATUS_NOT_DIVISIBLE,
        &["num_items (7)", "multiple of num_packs (3)"],
    ));
    v.push(case(
        "`num_physical < num_logical` (replication)",
        "`num_physical (R) must be >= num_logical (E): ...`",
        with_sizes(Func::Replicate, Sizes::plan(2, 4, 3, 1, 1, 1)),
        EPLB_STATUS_TOO_FEW_REPLICAS,
        &["num_physical (3)", "must be >= num_logical (4)"],
    ));
}

fn loads(v: &mut Vec<Case>) {
    for func in Func::ALL {
        let name = func.load_name();
        let at = if func == Func::Packing {
            6 + 2
        } else {
            shape(func).logical + 2
        };
        let pos = format!("{name}[1][2]");
        let specials: &[(&str, f32, &[&str])] = &[
            ("NaN", f32::NAN, &["NaN", "must not be NaN"]),
            ("+inf", f32::INFINITY, &["inf", "must be finite"]),
            ("-inf", f32::NEG_INFINITY, &["-inf", "must be finite"]),
            ("negative", -1.5, &["-1.5", "must be >= 0"]),
            ("negative subnormal", -1e-45, &["must be >= 0"]),
        ];
        if func.is_i64() {
            let mut call = base(func);
            set_load(&mut call, at, 0.0, -5);
            v.push(case(
                "a load NaN, +/-inf or negative",
                "`<weight|load>[layer][index] = <value> is invalid: loads must not be NaN | must be finite | must be >= 0`",
                call,
                EPLB_STATUS_INVALID_LOAD,
                &[&pos, "= -5", "must be >= 0"],
            ));
            let mut call = base(func);
            set_load(&mut call, at, 0.0, i64::MIN);
            v.push(case(
                "a load NaN, +/-inf or negative",
                "`<weight|load>[layer][index] = <value> is invalid: loads must not be NaN | must be finite | must be >= 0`",
                call,
                EPLB_STATUS_INVALID_LOAD,
                &[&pos, "must be >= 0"],
            ));
        } else {
            for &(_, value, needles) in specials {
                let mut call = base(func);
                set_load(&mut call, at, value, 0);
                let mut n: Vec<&str> = vec![&pos];
                n.extend_from_slice(needles);
                v.push(case(
                    "a load NaN, +/-inf or negative",
                    "`<weight|load>[layer][index] = <value> is invalid: loads must not be NaN | must be finite | must be >= 0`",
                    call,
                    EPLB_STATUS_INVALID_LOAD,
                    &n,
                ));
            }
            let mut call = base(func);
            set_load(&mut call, at, -0.0, 0);
            v.push(ok("a load `-0.0` or subnormal (valid)", call));
            let mut call = base(func);
            set_load(&mut call, at, f32::from_bits(1), 0);
            set_load(&mut call, 0, f32::MIN_POSITIVE / 2.0, 0);
            v.push(ok("a load `-0.0` or subnormal (valid)", call));
            let mut call = base(func);
            fill_loads(&mut call, f32::MAX / 2.0, 0);
            v.push(ok(
                "loads near `FLT_MAX` whose sums overflow f32, refined algorithm (packing, replication, evaluation, refined planners)",
                call,
            ));
        }
        let mut call = base(func);
        fill_loads(&mut call, 0.0, 0);
        v.push(ok("all loads zero", call));
        if func.is_i64() {
            let mut call = base(func);
            fill_loads(&mut call, 0.0, i64::MAX);
            v.push(ok(
                "loads `INT64_MAX` (i64 functions, both algorithms)",
                call.clone(),
            ));
            if func.has_opts() {
                v.push(ok(
                    "loads `INT64_MAX` (i64 functions, both algorithms)",
                    with_opts(call, OptsBytes::algorithm(EPLB_ALGORITHM_DEEPSEEK)),
                ));
            }
        }
    }
    for func in planners().filter(|f| !f.is_i64()) {
        let mut call = with_opts(base(func), OptsBytes::algorithm(EPLB_ALGORITHM_DEEPSEEK));
        fill_loads(&mut call, f32::MAX / 2.0, 0);
        v.push(case(
            "loads whose row sum exceeds `FLT_MAX`, DeepSeek algorithm (planners)",
            "`weight[layer][..] sums to <total>, beyond the f32 range that the DeepSeek-compatible algorithm accumulates in; scale the loads down or use EPLB_ALGORITHM_REFINED`",
            call,
            EPLB_STATUS_INVALID_LOAD,
            &["weight[0][..] sums to", "f32 range", "EPLB_ALGORITHM_REFINED"],
        ));
    }
    // DeepSeek packing of loads whose sums overflow f32: accepted (packing sums pack loads only).
    let mut call = with_opts(
        base(Func::Packing),
        OptsBytes::algorithm(EPLB_ALGORITHM_DEEPSEEK),
    );
    fill_loads(&mut call, f32::MAX / 2.0, 0);
    v.push(ok(
        "loads near `FLT_MAX`, DeepSeek `eplb_balanced_packing` (a valid packing; pack sums may be inf)",
        call,
    ));
}

fn size_overflow(v: &mut Vec<Case>) {
    const INPUT: &str =
        "sizes whose product overflows `size_t` (every pointer dangling: nothing may be read)";
    const SHAPE: &str = "`<what> (<factors>) overflows the address space`";
    for func in Func::ALL {
        let mut s = shape(func);
        s.layers = usize::MAX / 2 + 1;
        let what = match func {
            Func::Packing => "num_layers x num_items",
            Func::Replicate => "num_layers x num_logical",
            _ => "num_layers x num_replicas",
        };
        v.push(case(
            INPUT,
            SHAPE,
            with_sizes(func, s).all_dangling(),
            EPLB_STATUS_SIZE_OVERFLOW,
            &[what, "overflows the address space"],
        ));
        // The element count fits but the byte size does not.
        let mut s = shape(func);
        s.layers = usize::MAX / 64;
        v.push(case(
            "element counts that fit but byte sizes that overflow",
            "`<arg> (<n> elements of <size> bytes) overflows the address space`",
            with_sizes(func, s).all_dangling(),
            EPLB_STATUS_SIZE_OVERFLOW,
            &["elements of", "bytes) overflows the address space"],
        ));
        // A buffer that would end beyond the top of the address space.
        v.push(case(
            "a pointer whose buffer would end beyond the address space",
            "`<arg> ends beyond the address space overflows the address space`",
            base(func).with_ptr(Arg::Load, Ptr::High),
            EPLB_STATUS_SIZE_OVERFLOW,
            &[func.load_name(), "ends beyond the address space"],
        ));
    }
    for func in planners() {
        let mut s = shape(func);
        s.width = usize::MAX / (s.layers * s.logical) + 1;
        v.push(case(
            INPUT,
            SHAPE,
            with_sizes(func, s).all_dangling(),
            EPLB_STATUS_SIZE_OVERFLOW,
            &[
                "num_layers x num_logical x log2phy_width",
                "overflows the address space",
            ],
        ));
    }
    for func in [Func::Evaluate, Func::EvaluateI64] {
        let mut s = Sizes::plan(usize::MAX / 80 + 1, 1, 1, 1, 1, 1);
        s.width = 1;
        v.push(case(
            "element counts that fit but byte sizes that overflow",
            "`<arg> (<n> elements of <size> bytes) overflows the address space`",
            with_sizes(func, s).all_dangling(),
            EPLB_STATUS_SIZE_OVERFLOW,
            &["overflows the address space"],
        ));
    }
}

fn widths(v: &mut Vec<Case>) {
    for func in planners() {
        let s = shape(func);
        let needed = needed_width(func, s);
        let mut small = s;
        small.width = needed - 1;
        v.push(case(
            "`log2phy_width` below the plan's largest replica count",
            "`log2phy_width (w) is smaller than the largest replica count of the plan (k, layer l); pass log2phy_width >= k (...)`",
            with_sizes(func, small),
            EPLB_STATUS_WIDTH_TOO_SMALL,
            &[
                leak(format!("log2phy_width ({})", needed - 1)),
                leak(format!("pass log2phy_width >= {needed}")),
            ],
        ));
        let mut zero = s;
        zero.width = 0;
        if matches!(func, Func::Plan | Func::PlanI64) {
            let mut call = with_sizes(func, zero);
            call.out_log2phy = false;
            v.push(ok(
                "`log2phy` NULL: `log2phy_width` ignored (`eplb_plan_experts`)",
                call,
            ));
        }
        v.push(case(
            "`log2phy_width` below the plan's largest replica count",
            "`log2phy_width (w) is smaller than the largest replica count of the plan (k, layer l); pass log2phy_width >= k (...)`",
            with_sizes(func, zero),
            EPLB_STATUS_WIDTH_TOO_SMALL,
            &["log2phy_width (0)", leak(format!(">= {needed}"))],
        ));
        let mut exact = s;
        exact.width = needed;
        v.push(ok(
            "`log2phy_width` exactly the largest replica count",
            with_sizes(func, exact),
        ));
        let mut large = s;
        large.width = 1000;
        v.push(ok(
            "`log2phy_width` very large (rows padded with -1)",
            with_sizes(func, large),
        ));
    }
}

/// The largest replica count of the base plan (what `log2phy_width` must reach).
fn needed_width(func: Func, s: Sizes) -> usize {
    let call = with_sizes(func, s);
    let out = run(&call);
    assert_eq!(out.status, EPLB_STATUS_OK, "{}", out.message);
    out.i64s(Arg::Logcnt, s.layers * s.logical)
        .into_iter()
        .max()
        .unwrap() as usize
}

fn misaligned(v: &mut Vec<Case>) {
    for func in Func::ALL {
        let mut call = base(func);
        if func.has_opts() {
            call.opts = Some(OptsBytes::defaults());
        }
        if matches!(
            func,
            Func::Replan | Func::ReplanI64 | Func::Plan | Func::PlanI64
        ) {
            call.stats = Some(StatsSpec::new(MIGRATION_SIZE));
        }
        if matches!(func, Func::Plan | Func::PlanI64) {
            call.old_phy2log = Some(simple_plan(&call.sizes));
        }
        if func.is_evaluate() {
            call.in_logcnt = Some(counts(&call.in_phy2log, &call.sizes));
            call.in_group_node = Some(vec![0, 1, 0, 1, 0, 1, 0, 1]);
            call.old_phy2log = Some(simple_plan(&call.sizes));
        }
        for &arg in func.args() {
            if !call.present(arg) {
                continue;
            }
            let align = arg.align(func);
            let shift = if align == 8 { 4 } else { 1 };
            v.push(case(
                "a misaligned pointer (offset by 1 byte for `float`, 4 for `int64_t` and structs)",
                "`<arg> (address 0x...) is not aligned to <4|8> bytes`",
                call.clone().with_ptr(arg, Ptr::Misaligned(shift)),
                EPLB_STATUS_MISALIGNED_POINTER,
                &[
                    arg.c_name(func),
                    leak(format!("is not aligned to {align} bytes")),
                ],
            ));
            if align == 8 && shift != 1 {
                v.push(case(
                    "a misaligned pointer (offset by 1 byte for `float`, 4 for `int64_t` and structs)",
                    "`<arg> (address 0x...) is not aligned to <4|8> bytes`",
                    call.clone().with_ptr(arg, Ptr::Misaligned(1)),
                    EPLB_STATUS_MISALIGNED_POINTER,
                    &[arg.c_name(func), "is not aligned to 8 bytes"],
                ));
            }
        }
    }
}

fn counts(phy: &[i64], s: &Sizes) -> Vec<i64> {
    let mut c = vec![0i64; s.layers * s.logical];
    for layer in 0..s.layers {
        for &x in &phy[layer * s.replicas..(layer + 1) * s.replicas] {
            c[layer * s.logical + x as usize] += 1;
        }
    }
    c
}

fn overlaps(v: &mut Vec<Case>) {
    const INPUT_OUT: &str = "an output overlapping an input";
    const OUT_OUT: &str = "two outputs overlapping";
    const SHAPE: &str =
        "`<a> and <b> overlap; every output buffer must be disjoint from the other buffers`";
    let overlap = |v: &mut Vec<Case>, input: &'static str, call: Call, a: &str, b: &str| {
        // An output that runs past the end of the buffer it starts in also overlaps whatever lies
        // beyond; the message names the first overlapping pair, which then need not be (a, b).
        let spills = call.ptrs.iter().any(|&(out, p)| match p {
            Ptr::Alias(target, k) => {
                let elem = call.declared_bytes(target).unwrap() / call.elem(target).max(1);
                call.declared_bytes(out).unwrap() > (elem - k) * call.elem(target)
            }
            _ => false,
        });
        let a = if spills { "overlap" } else { a };
        v.push(case(
            input,
            SHAPE,
            call,
            EPLB_STATUS_OVERLAPPING_BUFFERS,
            &[leak(a.to_string()), leak(b.to_string()), "overlap"],
        ));
    };
    for func in Func::ALL {
        let name = func.load_name();
        let mut call = base(func);
        if matches!(func, Func::Plan | Func::PlanI64) {
            call.old_phy2log = Some(simple_plan(&call.sizes));
        }
        if matches!(
            func,
            Func::Replan | Func::ReplanI64 | Func::Plan | Func::PlanI64
        ) {
            call.stats = Some(StatsSpec::new(MIGRATION_SIZE));
        }
        let outs: Vec<Arg> = func
            .args()
            .iter()
            .copied()
            .filter(|&a| func.writes(a))
            .collect();
        for &out in &outs {
            // Output starting inside the loads.
            overlap(
                v,
                INPUT_OUT,
                call.clone().with_ptr(out, Ptr::Alias(Arg::Load, 2)),
                name,
                out.c_name(func),
            );
        }
        if func.args().contains(&Arg::OldPhy2log) && call.present(Arg::OldPhy2log) {
            // (Not stats: the struct_size the caller writes there would break the old plan.)
            for &out in outs.iter().filter(|&&o| o != Arg::Stats) {
                overlap(
                    v,
                    INPUT_OUT,
                    call.clone().with_ptr(out, Ptr::Alias(Arg::OldPhy2log, 0)),
                    "old_phy2log",
                    out.c_name(func),
                );
            }
        }
        // Every ordered pair of outputs: the second starts one element into the first.
        for &a in &outs {
            for &b in &outs {
                if a == b {
                    continue;
                }
                overlap(
                    v,
                    OUT_OUT,
                    call.clone().with_ptr(b, Ptr::Alias(a, 1)),
                    a.c_name(func),
                    b.c_name(func),
                );
            }
        }
        // The same buffer for two outputs.
        if outs.len() >= 2 {
            let (a, b) = (outs[0], outs[1]);
            overlap(
                v,
                OUT_OUT,
                call.clone().with_ptr(b, Ptr::Alias(a, 0)),
                a.c_name(func),
                b.c_name(func),
            );
        }
    }
    // Inputs may overlap each other: evaluating a plan against itself.
    for func in [Func::Evaluate, Func::EvaluateI64] {
        let mut call = base(func);
        call.old_phy2log = Some(Vec::new());
        v.push(ok(
            "two inputs overlapping (`old_phy2log == phy2log` in `eplb_evaluate_plan`)",
            call.with_ptr(Arg::OldPhy2log, Ptr::Alias(Arg::Phy2log, 0)),
        ));
    }
}

fn options(v: &mut Vec<Case>) {
    const INPUT_SIZE: &str = "`opts->struct_size` too small (< 12), too large (> 4096), or larger than `sizeof(eplb_options)` with a non-zero tail";
    const SHAPE: &str = "`opts-><field> = <value> is invalid: <rule>`";
    for func in Func::ALL.into_iter().filter(|f| f.has_opts()) {
        let bad = |v: &mut Vec<Case>, input: &'static str, o: OptsBytes, needles: &[&str]| {
            v.push(case(
                input,
                SHAPE,
                with_opts(base(func), o),
                EPLB_STATUS_INVALID_OPTIONS,
                needles,
            ));
        };
        for size in [0usize, 8, 11] {
            let mut o = OptsBytes::defaults();
            o.set_struct_size(size);
            bad(
                v,
                INPUT_SIZE,
                o,
                &[leak(format!("opts->struct_size = {size}")), "too small"],
            );
        }
        for size in [MAX_STRUCT_SIZE + 1, usize::MAX] {
            let mut o = OptsBytes::defaults();
            o.set_struct_size(size);
            bad(
                v,
                INPUT_SIZE,
                o,
                &[
                    leak(format!("opts->struct_size = {size}")),
                    "implausibly large",
                ],
            );
        }
        for (size, at) in [
            (OPTS_SIZE + 8, OPTS_SIZE),
            (64, 63),
            (MAX_STRUCT_SIZE, 4000),
        ] {
            let mut o = OptsBytes::defaults();
            o.set_struct_size(size);
            o.bytes[at] = 1;
            bad(
                v,
                INPUT_SIZE,
                o,
                &[leak(format!("opts->struct_size = {size}")), "not zero"],
            );
        }
        for size in [OPTS_SIZE + 8, 64, MAX_STRUCT_SIZE] {
            let mut o = OptsBytes::defaults();
            o.set_struct_size(size);
            v.push(ok(
                "`opts->struct_size` larger than `sizeof(eplb_options)` with a zero tail, or an older smaller struct (12..32 bytes)",
                with_opts(base(func), o),
            ));
        }
        for size in [12, 16, 24] {
            let mut o = OptsBytes::defaults();
            // Fields beyond struct_size are not read: garbage there is ignored.
            o.set_f64(24, f64::NAN);
            if size < 24 {
                o.set_f64(16, -1.0);
            }
            if size < 16 {
                o.set_i32(12, 99);
            }
            o.set_struct_size(size);
            v.push(ok(
                "`opts->struct_size` larger than `sizeof(eplb_options)` with a zero tail, or an older smaller struct (12..32 bytes)",
                with_opts(base(func), o),
            ));
        }
        for alg in [2, -1, i32::MAX] {
            let mut o = OptsBytes::defaults();
            o.set_i32(8, alg);
            bad(
                v,
                "`opts->algorithm` unknown",
                o,
                &[
                    leak(format!("opts->algorithm = {alg}")),
                    "EPLB_ALGORITHM_DEEPSEEK (0) or EPLB_ALGORITHM_REFINED (1)",
                ],
            );
        }
        for effort in [4, -1, i32::MIN] {
            for alg in [EPLB_ALGORITHM_REFINED, EPLB_ALGORITHM_DEEPSEEK] {
                let mut o = OptsBytes::algorithm(alg);
                o.set_i32(12, effort);
                bad(
                    v,
                    "`opts->effort` out of range (either algorithm)",
                    o,
                    &[
                        leak(format!("opts->effort = {effort}")),
                        "EPLB_EFFORT_FAST (0) .. EPLB_EFFORT_MAX (3)",
                    ],
                );
            }
        }
        for effort in 0..=3 {
            let mut o = OptsBytes::defaults();
            o.set_i32(12, effort);
            v.push(ok("`opts->effort` each level", with_opts(base(func), o)));
        }
        for loss in [f64::NAN, -0.5, f64::INFINITY, f64::NEG_INFINITY] {
            let mut o = OptsBytes::defaults();
            o.set_f64(16, loss);
            bad(
                v,
                "`opts->max_balance_loss` NaN, infinite or negative",
                o,
                &["opts->max_balance_loss", "must be finite and >= 0"],
            );
        }
        for share in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let mut o = OptsBytes::defaults();
            o.set_f64(24, share);
            bad(
                v,
                "`opts->max_off_home_share` outside [0, 1] or NaN",
                o,
                &["opts->max_off_home_share", "must be in [0, 1]"],
            );
        }
        let mut o = OptsBytes::algorithm(EPLB_ALGORITHM_DEEPSEEK);
        o.set_f64(24, 0.5);
        bad(
            v,
            "`opts->max_off_home_share > 0` with the DeepSeek algorithm",
            o,
            &[
                "opts->max_off_home_share = 0.5",
                "DeepSeek algorithm is strictly hierarchical",
            ],
        );
        for share in [0.0, 0.5, 1.0] {
            let mut o = OptsBytes::defaults();
            o.set_f64(24, share);
            o.set_f64(16, 0.05);
            v.push(ok(
                "`opts->max_off_home_share` in [0, 1] and `max_balance_loss >= 0` (refined)",
                with_opts(base(func), o),
            ));
        }
    }
}

fn stats_structs(v: &mut Vec<Case>) {
    const INPUT: &str =
        "a statistics struct's `struct_size` too small (< 16) or too large (> 4096)";
    const SHAPE: &str =
        "`stats->struct_size = <n> is invalid: too small for this struct | implausibly large`";
    for func in Func::ALL
        .into_iter()
        .filter(|f| f.args().contains(&Arg::Stats))
    {
        let full = if func.is_evaluate() {
            PLAN_STATS_SIZE
        } else {
            MIGRATION_SIZE
        };
        let mut call = base(func);
        if matches!(func, Func::Plan | Func::PlanI64) {
            call.old_phy2log = Some(simple_plan(&call.sizes));
        }
        for size in [0usize, 8, 15] {
            let mut c = call.clone();
            c.stats = Some(StatsSpec::new(size));
            v.push(case(
                INPUT,
                SHAPE,
                c,
                EPLB_STATUS_INVALID_OPTIONS,
                &[leak(format!("stats->struct_size = {size}")), "too small"],
            ));
        }
        for size in [MAX_STRUCT_SIZE + 1, usize::MAX] {
            let mut c = call.clone();
            c.stats = Some(StatsSpec::new(size));
            v.push(case(
                INPUT,
                SHAPE,
                c,
                EPLB_STATUS_INVALID_OPTIONS,
                &[
                    leak(format!("stats->struct_size = {size}")),
                    "implausibly large",
                ],
            ));
        }
        for size in [16, 20, 24, full - 4, full, full + 8, 1000, MAX_STRUCT_SIZE] {
            let mut c = call.clone();
            c.stats = Some(StatsSpec::new(size));
            v.push(ok(
                "a statistics struct of any `struct_size` in 16..=4096 (fields beyond it not written, nothing beyond `sizeof` written)",
                c,
            ));
        }
    }
}

fn invalid_plans(v: &mut Vec<Case>) {
    const SHAPE_ID: &str =
        "`<arg>: <arg>[layer][slot] = <id> is not an expert id (must be in 0..E)`";
    const SHAPE_MISSING: &str =
        "`<arg>: layer l has no slot for expert x; every expert needs at least one`";
    for func in Func::ALL.into_iter().filter(|f| {
        matches!(
            f,
            Func::Replan
                | Func::ReplanI64
                | Func::Plan
                | Func::PlanI64
                | Func::Evaluate
                | Func::EvaluateI64
        )
    }) {
        let s = shape(func);
        let args: &[Arg] = if func.is_evaluate() {
            &[Arg::OldPhy2log, Arg::Phy2log]
        } else {
            &[Arg::OldPhy2log]
        };
        for &arg in args {
            let name = arg.c_name(func);
            for bad in [s.logical as i64, -1, i64::MAX, i64::MIN] {
                let mut plan = simple_plan(&s);
                plan[s.replicas + 3] = bad;
                let mut call = base(func);
                if arg == Arg::Phy2log {
                    call.in_phy2log = plan;
                } else {
                    call.old_phy2log = Some(plan);
                }
                v.push(case(
                    "an input plan (`old_phy2log`, `phy2log`) with an id outside `0..num_logical`",
                    SHAPE_ID,
                    call,
                    EPLB_STATUS_INVALID_PLAN,
                    &[
                        leak(format!("{name}[1][3] = {bad}")),
                        "is not an expert id",
                        "0..8",
                    ],
                ));
            }
            let mut plan = simple_plan(&s);
            for x in &mut plan[s.replicas..] {
                if *x == 5 {
                    *x = 6;
                }
            }
            let mut call = base(func);
            if arg == Arg::Phy2log {
                call.in_phy2log = plan;
            } else {
                call.old_phy2log = Some(plan);
            }
            v.push(case(
                "an input plan with an expert that has no slot",
                SHAPE_MISSING,
                call,
                EPLB_STATUS_INVALID_PLAN,
                &[name, "layer 1 has no slot for expert 5"],
            ));
        }
        if func.is_evaluate() {
            let mut call = base(func);
            let mut c = counts(&call.in_phy2log, &s);
            c[s.logical + 1] += 1;
            call.in_logcnt = Some(c);
            v.push(case(
                "`logcnt` that disagrees with `phy2log` (`eplb_evaluate_plan`)",
                "`logcnt: logcnt[layer][x] = <n> but phy2log gives expert x <m> slots`",
                call,
                EPLB_STATUS_INVALID_PLAN,
                &["logcnt[1][1] = ", "but phy2log gives expert 1"],
            ));
            for bad in [2i64, -1] {
                let mut call = base(func);
                call.in_group_node = Some(vec![0, 1, 0, 1, 0, bad, 0, 1]);
                v.push(case(
                    "`group_node` outside `0..num_nodes` under the hierarchical policy (`eplb_evaluate_plan`)",
                    "`group_node: group_node[layer][group] = <n> is not a node (must be in 0..N)`",
                    call,
                    EPLB_STATUS_INVALID_PLAN,
                    &[leak(format!("group_node[1][1] = {bad}")), "is not a node", "0..2"],
                ));
            }
            let mut call = with_sizes(func, Sizes::plan(2, 9, 12, 4, 3, 4));
            call.in_group_node = Some(vec![7; 8]);
            v.push(ok(
                "`group_node` of any value under the global policy (ignored by `eplb_evaluate_plan`)",
                call,
            ));
            let mut call = base(func);
            call.in_logcnt = Some(counts(&call.in_phy2log, &s));
            call.in_group_node = Some(vec![0, 1, 1, 0, 0, 0, 1, 1]);
            call.old_phy2log = Some(simple_plan(&s));
            v.push(ok(
                "every optional input of `eplb_evaluate_plan` given",
                call,
            ));
        }
    }
}

fn small_shapes(v: &mut Vec<Case>) {
    for func in Func::ALL {
        let (one_expert, one_gpu, many_replicas) = match func {
            Func::Packing => (
                Sizes {
                    layers: 2,
                    logical: 1,
                    replicas: 0,
                    groups: 1,
                    nodes: 1,
                    gpus: 1,
                    width: 1,
                },
                Sizes {
                    layers: 2,
                    logical: 5,
                    replicas: 0,
                    groups: 1,
                    nodes: 1,
                    gpus: 1,
                    width: 1,
                },
                Sizes {
                    layers: 2,
                    logical: 5,
                    replicas: 0,
                    groups: 1,
                    nodes: 1,
                    gpus: 5,
                    width: 1,
                },
            ),
            Func::Replicate => (
                Sizes::plan(2, 1, 1, 1, 1, 1),
                Sizes::plan(2, 5, 5, 1, 1, 1),
                Sizes::plan(2, 1, 9, 1, 1, 1),
            ),
            _ => (
                Sizes::plan(2, 1, 1, 1, 1, 1),
                Sizes::plan(2, 5, 7, 1, 1, 1),
                Sizes::plan(2, 1, 8, 1, 1, 4),
            ),
        };
        v.push(ok(
            "one expert (`E = R = G = N = P = 1`; one item, one pack)",
            with_sizes(func, one_expert),
        ));
        v.push(ok("one GPU (`P = 1`; one pack)", with_sizes(func, one_gpu)));
        v.push(ok(
            "one expert with many replicas (`E = 1`, `R = 8`, `P = 4`; a pack per item)",
            with_sizes(func, many_replicas),
        ));
        if func.is_planning_shape() {
            // One node per group and one GPU per node, DeepSeek-like but tiny.
            v.push(ok(
                "one GPU per node, one group per node",
                with_sizes(func, Sizes::plan(2, 8, 8, 4, 4, 4)),
            ));
        }
    }
}

fn judge(case: &Case, out: &Outcome) -> Result<(), String> {
    if out.status != case.status {
        return Err(format!(
            "expected {}, got {} ({:?})",
            status_name(case.status),
            status_name(out.status),
            out.message
        ));
    }
    check(&case.call, out)?;
    if case.status != EPLB_STATUS_OK {
        for needle in &case.needles {
            if !out.message.contains(needle.as_str()) {
                return Err(format!("message {:?} lacks {needle:?}", out.message));
            }
        }
        if out.message_len != out.message.len() {
            return Err("eplb_last_error_message length differs from the text".into());
        }
        if status_str(out.status) == "unknown status" {
            return Err("eplb_status_str does not know the status".into());
        }
    } else if let Some(verify) = case.verify {
        verify(&case.call, out)?;
    }
    Ok(())
}

#[test]
fn matrix() {
    let all = cases();
    let mut failures = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let out = run(&case.call);
        if let Err(e) = judge(case, &out) {
            failures.push(format!(
                "#{i} [{}] {}: {e}",
                case.input,
                case.call.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} matrix rows failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    println!("{} matrix rows passed", all.len());
}

/// Every function appears in the matrix with every status it can return.
#[test]
fn matrix_covers_every_function_and_status() {
    let all = cases();
    for func in Func::ALL {
        let statuses: BTreeSet<i32> = all
            .iter()
            .filter(|c| c.call.func == func)
            .map(|c| c.status)
            .collect();
        let mut want = vec![
            EPLB_STATUS_OK,
            EPLB_STATUS_NULL_POINTER,
            EPLB_STATUS_MISALIGNED_POINTER,
            EPLB_STATUS_OVERLAPPING_BUFFERS,
            EPLB_STATUS_SIZE_OVERFLOW,
            EPLB_STATUS_ZERO_SIZE,
            EPLB_STATUS_INVALID_LOAD,
        ];
        if func != Func::Replicate {
            want.push(EPLB_STATUS_NOT_DIVISIBLE);
        }
        if func.has_opts() || func.args().contains(&Arg::Stats) {
            want.push(EPLB_STATUS_INVALID_OPTIONS);
        }
        if func.makes_plan() {
            want.push(EPLB_STATUS_WIDTH_TOO_SMALL);
        }
        if func.is_planning_shape() || func == Func::Replicate {
            want.push(EPLB_STATUS_TOO_FEW_REPLICAS);
        }
        if func.args().contains(&Arg::OldPhy2log) {
            want.push(EPLB_STATUS_INVALID_PLAN);
        }
        for s in want {
            assert!(
                statuses.contains(&s),
                "{} has no row with {}",
                func.name(),
                status_name(s)
            );
        }
    }
}

/// Huge loads (sums beyond `FLT_MAX`): the refined planner plans them, the plan is valid, and its
/// statistics are finite.
#[test]
fn huge_loads_plan_with_finite_stats() {
    for func in [Func::Rebalance, Func::Plan] {
        for s in [
            shape(func),
            Sizes::plan(2, 9, 12, 4, 3, 4),
            Sizes::plan(1, 16, 20, 1, 1, 4),
        ] {
            let mut call = with_sizes(func, s);
            let n = s.layers * s.logical;
            call.loads = Loads::F32((0..n).map(|i| f32::MAX / (1 + i % 3) as f32).collect());
            let out = run(&call);
            assert_eq!(out.status, EPLB_STATUS_OK, "{}", out.message);
            check(&call, &out).unwrap();
            let mut eval = with_sizes(Func::Evaluate, s);
            eval.loads = call.loads.clone();
            eval.in_phy2log = out.i64s(Arg::Phy2log, s.layers * s.replicas);
            let stats = run(&eval);
            assert_eq!(stats.status, EPLB_STATUS_OK, "{}", stats.message);
            // check() asserts every statistic is finite and max GPU loads match an f64 recount.
            check(&eval, &stats).unwrap();
        }
    }
}

/// An output overlapping the options struct is rejected (found by tests/ffi_random.rs: it used to
/// be accepted and written over the caller's `eplb_options`; fixed).
#[test]
fn output_overlapping_opts_is_rejected() {
    let mut failures = Vec::new();
    for func in Func::ALL.into_iter().filter(|f| f.has_opts()) {
        // Outputs small enough to lie inside the 32-byte struct, so that opts is the only overlap.
        let tiny = if func == Func::Packing {
            Sizes {
                layers: 1,
                logical: 2,
                replicas: 0,
                groups: 1,
                nodes: 1,
                gpus: 1,
                width: 1,
            }
        } else {
            Sizes::plan(1, 1, 1, 1, 1, 1)
        };
        let mut call = with_opts(with_sizes(func, tiny), OptsBytes::defaults());
        if matches!(
            func,
            Func::Replan | Func::ReplanI64 | Func::Plan | Func::PlanI64
        ) {
            call.stats = Some(StatsSpec::new(MIGRATION_SIZE));
        }
        for &out in func.args().iter().filter(|&&a| func.writes(a)) {
            if out == Arg::Stats {
                continue; // the struct_size the caller writes would clobber opts->struct_size
            }
            let c = call.clone().with_ptr(out, Ptr::Alias(Arg::Opts, 0));
            let o = run(&c);
            if o.status != EPLB_STATUS_OVERLAPPING_BUFFERS
                || !o.message.contains("opts")
                || check(&c, &o).is_err()
            {
                failures.push(format!(
                    "{}: {} ({})",
                    c.describe(),
                    status_name(o.status),
                    o.message
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Touching but disjoint buffers are not overlapping.
#[test]
fn adjacent_outputs_are_accepted() {
    let w = [3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0];
    let mut out = [0x7Fi64; 12];
    let (pack, rank) = out.split_at_mut(6);
    // SAFETY: two disjoint 6-element buffers that touch.
    let st = unsafe {
        eplb_balanced_packing(
            w.as_ptr(),
            1,
            6,
            3,
            std::ptr::null(),
            pack.as_mut_ptr(),
            rank.as_mut_ptr(),
        )
    };
    assert_eq!(st, EPLB_STATUS_OK);
    check_packing_rows(pack, rank, 1, 6, 3).unwrap();
}

fn message_via(buf_len: usize, null: bool) -> (usize, Vec<u8>) {
    let mut buf = vec![0xEEu8; buf_len + 8];
    let ptr = if null {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast::<c_char>()
    };
    // SAFETY: buf is writable for buf_len bytes (or NULL with buf_len 0).
    let n = unsafe { eplb_last_error_message(ptr, buf_len) };
    (n, buf)
}

#[test]
fn last_error_message_buffers() {
    std::thread::spawn(|| {
        // Before the first failure on a thread: empty.
        let (n, buf) = message_via(4, false);
        assert_eq!(n, 0);
        assert_eq!(buf[0], 0);
        assert!(buf[1..].iter().all(|&b| b == 0xEE));
        // Make a failure with a known message.
        let out = run(&base(Func::Packing).with_ptr(Arg::PackIndex, Ptr::Null));
        assert_eq!(out.status, EPLB_STATUS_NULL_POINTER);
        let text = "pack_index is NULL but must point to 12 elements";
        assert_eq!(out.message, text);
        let len = text.len();
        // NULL buffer, zero length: the length only.
        let (n, _) = message_via(0, true);
        assert_eq!(n, len);
        // Non-NULL buffer, zero length: nothing written.
        let (n, buf) = message_via(0, false);
        assert_eq!(n, len);
        assert!(buf.iter().all(|&b| b == 0xEE));
        // Length 1: just the NUL.
        let (n, buf) = message_via(1, false);
        assert_eq!(n, len);
        assert_eq!(buf[0], 0);
        assert!(buf[1..].iter().all(|&b| b == 0xEE));
        // Too short: truncated, NUL-terminated, full length returned, nothing past buf_len.
        for k in [2, 10, len - 1, len, len + 1, len + 5] {
            let (n, buf) = message_via(k, false);
            assert_eq!(n, len, "buf_len {k}");
            let copied = len.min(k - 1);
            assert_eq!(&buf[..copied], &text.as_bytes()[..copied], "buf_len {k}");
            assert_eq!(buf[copied], 0, "buf_len {k}: NUL");
            assert!(
                buf[copied + 1..].iter().all(|&b| b == 0xEE),
                "buf_len {k}: wrote past the NUL"
            );
            let c = CStr::from_bytes_until_nul(&buf).unwrap();
            assert_eq!(c.to_bytes(), &text.as_bytes()[..copied]);
        }
        // A successful call leaves the message alone; the next failure replaces it.
        let good = run(&base(Func::Rebalance));
        assert_eq!(good.status, EPLB_STATUS_OK);
        assert_eq!(good.message, text);
        let mut s = shape(Func::Rebalance);
        s.gpus = 0;
        let bad = run(&with_sizes(Func::Rebalance, s));
        assert_eq!(bad.status, EPLB_STATUS_ZERO_SIZE);
        assert_eq!(bad.message, "num_gpus must be at least 1, got 0");
    })
    .join()
    .unwrap();
}

#[test]
fn status_str_for_every_code() {
    let mut seen = BTreeSet::new();
    for (code, _) in STATUSES {
        let text = status_str(code);
        assert!(
            !text.is_empty() && text != "unknown status",
            "{code}: {text}"
        );
        assert!(seen.insert(text.clone()), "two statuses share {text:?}");
        assert_eq!(eplb_status_str(code), eplb_status_str(code), "not static");
    }
    assert_eq!(status_str(EPLB_STATUS_OK), "ok");
    for code in [-1, 14, 100, i32::MAX, i32::MIN] {
        assert_eq!(status_str(code), "unknown status", "{code}");
    }
}

#[test]
fn version_is_the_crate_version() {
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(eplb_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        v,
        format!("{EPLB_VERSION_MAJOR}.{EPLB_VERSION_MINOR}.{EPLB_VERSION_PATCH}")
    );
    assert_eq!(eplb_version(), eplb_version());
}

#[test]
fn options_init_fills_defaults_and_ignores_bad_pointers() {
    // SAFETY: NULL is a documented no-op.
    unsafe { eplb_options_init(std::ptr::null_mut()) };
    let mut arena = [0x5A5A_5A5A_5A5A_5A5Au64; 8];
    let base = arena.as_mut_ptr().cast::<u8>();
    for shift in 1..8 {
        // SAFETY: inside the arena; misaligned pointers are documented as ignored.
        unsafe { eplb_options_init(base.add(shift).cast()) };
        assert!(
            arena.iter().all(|&w| w == 0x5A5A_5A5A_5A5A_5A5A),
            "wrote at shift {shift}"
        );
    }
    // SAFETY: aligned, 64 bytes available.
    unsafe { eplb_options_init(base.add(8).cast()) };
    let o = OptsBytes::defaults();
    assert_eq!(o.struct_size(), OPTS_SIZE);
    assert_eq!(o.algorithm_value(), EPLB_ALGORITHM_REFINED);
    assert_eq!(o.fault(), None);
    let bytes: Vec<u8> = arena.iter().flat_map(|w| w.to_ne_bytes()).collect();
    assert_eq!(&bytes[8..8 + OPTS_SIZE], &o.bytes[..]);
    assert!(
        bytes[..8]
            .iter()
            .chain(&bytes[8 + OPTS_SIZE..])
            .all(|&b| b == 0x5A)
    );
    let i32_at = |at: usize| i32::from_ne_bytes(bytes[8 + at..12 + at].try_into().unwrap());
    assert_eq!(i32_at(12), EPLB_EFFORT_DEFAULT);
}

// ------------------------------------------------------------------------------------------------
// The README table.

fn short(func: Func) -> &'static str {
    match func {
        Func::Packing => "packing",
        Func::Replicate => "replicate",
        Func::Rebalance | Func::RebalanceI64 => "rebalance",
        Func::Replan | Func::ReplanI64 => "replan",
        Func::Plan | Func::PlanI64 => "plan",
        Func::Evaluate | Func::EvaluateI64 => "evaluate",
    }
}

/// The markdown table: one row per (input, status), in matrix order.
fn readme_table() -> String {
    let all = cases();
    let mut rows: Vec<(&str, i32, &str, Vec<&str>, usize)> = Vec::new();
    for c in &all {
        match rows.iter_mut().find(|r| r.0 == c.input && r.1 == c.status) {
            Some(row) => {
                if !row.3.contains(&short(c.call.func)) {
                    row.3.push(short(c.call.func));
                }
                row.4 += 1;
            }
            None => rows.push((c.input, c.status, c.shape, vec![short(c.call.func)], 1)),
        }
    }
    let mut t =
        String::from("| input | status | message shape | functions (calls) |\n|---|---|---|---|\n");
    for (input, status, shape, funcs, n) in rows {
        let funcs = if funcs.len() == 6 {
            "all".to_string()
        } else {
            funcs.join(", ")
        };
        // A `|` inside a table cell (even in a code span) must be escaped.
        let shape = shape.replace('|', "\\|");
        t += &format!(
            "| {input} | `{}` | {shape} | {funcs} ({n}) |\n",
            status_name(status)
        );
    }
    t += &format!(
        "\n{} calls in all (`tests/ffi_matrix.rs`); `rebalance`, `replan`, `plan`, `evaluate` include their `_i64` forms.\n",
        all.len()
    );
    t
}

const TABLE_START: &str = "<!-- hardening-table:start -->\n";
const TABLE_END: &str = "<!-- hardening-table:end -->";

#[test]
fn readme_table_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let table = readme_table();
    let (Some(start), Some(end)) = (readme.find(TABLE_START), readme.find(TABLE_END)) else {
        panic!("README.md lacks the hardening table markers");
    };
    let current = &readme[start + TABLE_START.len()..end];
    if std::env::var_os("EPLB_BLESS").is_some() {
        let fresh = format!(
            "{}{}{}",
            &readme[..start + TABLE_START.len()],
            table,
            &readme[end..]
        );
        std::fs::write(&path, fresh).expect("write README.md");
        return;
    }
    assert!(
        current == table,
        "the README hardening table is stale; refresh it with \
         `EPLB_BLESS=1 cargo test --release --test ffi_matrix readme` and commit README.md"
    );
}
