//! Inputs found by the fuzz targets (`fuzz/`) and the randomized FFI test, kept as ordinary tests on
//! stable Rust. Each is the decoded call (`cargo run --release --example replay` in `fuzz/` prints
//! it), run through the same harness and contract checks as the fuzzers.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use eplb::ffi::*;
use harness::{Arg, Call, Func, Loads, OptsBytes, Ptr, Sizes, check, model, run, status_name};

/// Runs a call and holds the full contract (status model, untouched outputs, invariants).
fn holds(call: &Call) -> i32 {
    let out = run(call);
    check(call, &out).unwrap_or_else(|e| panic!("{e}"));
    model(call)
        .check(out.status, &out.message)
        .unwrap_or_else(|e| panic!("{e} for {}", call.describe()));
    out.status
}

/// fuzz target `packing`, 2026-11 (slow unit, 10 s instrumented, ~0.5 s in release): two layers of
/// 32 items into 8 packs at `EPLB_EFFORT_MAX`, two items far heavier than the rest. Not a contract
/// violation: the exact branch and bound spends its whole (deterministic) node budget. Kept to
/// hold the result's validity on this input.
#[test]
fn packing_effort_max_heavy_pair() {
    let mut loads = vec![60.0f32; 64];
    loads[3] = 4095.9998;
    loads[31] = 4095.9998;
    loads[36] = 420.0;
    let tail = [
        350.0, 0.0, 0.0, 150.0, 704.0, 75.0, 300.0, 867.0, 494.0, 735.0, 60.0, 310.0, 400.0, 370.0,
        735.0, 990.0,
    ];
    loads[48..].copy_from_slice(&tail);
    let mut call = Call::new(
        Func::Packing,
        Sizes {
            layers: 2,
            logical: 32,
            replicas: 0,
            groups: 1,
            nodes: 1,
            gpus: 8,
            width: 1,
        },
        Loads::F32(loads),
    );
    let mut opts = OptsBytes::defaults();
    opts.set_i32(12, EPLB_EFFORT_MAX);
    opts.set_f64(16, 0.5);
    call.opts = Some(opts);
    assert_eq!(holds(&call), EPLB_STATUS_OK);
}

/// tests/ffi_random.rs seed 0:0x5eed0000017d: an output overlapping the options struct was accepted
/// and written over it (reported and fixed; see also ffi_matrix::output_overlapping_opts_is_rejected).
#[test]
fn packing_output_inside_opts() {
    let mut call = Call::valid(
        Func::Packing,
        Sizes {
            layers: 1,
            logical: 2,
            replicas: 0,
            groups: 1,
            nodes: 1,
            gpus: 2,
            width: 1,
        },
    );
    call.opts = Some(OptsBytes::defaults());
    let call = call.with_ptr(Arg::PackIndex, Ptr::Alias(Arg::Opts, 0));
    let out = run(&call);
    assert_eq!(
        out.status,
        EPLB_STATUS_OVERLAPPING_BUFFERS,
        "{}: {}",
        status_name(out.status),
        out.message
    );
    check(&call, &out).unwrap();
}

/// fuzz target `replan`, 2026-11 (a harness false positive, fixed in the harness, not in eplb): a
/// migration stats struct whose `struct_size` (17) ends inside a field. The library writes bytes
/// 8..17 only; the harness compared the partly written field. Kept for both sides.
#[test]
fn replan_stats_struct_size_inside_a_field() {
    for (layers, size) in [(0, 17), (2, 17), (2, 33), (2, 39)] {
        let mut call = Call::valid(Func::ReplanI64, Sizes::plan(layers, 4, 12, 7, 3, 6));
        call.sizes.width = 9;
        call.stats = Some(harness::StatsSpec::new(size));
        assert_eq!(holds(&call), EPLB_STATUS_OK);
    }
}

/// fuzz target `evaluate_plan`, 2026-11 (a harness bug, fixed in the harness: its generator
/// overflowed adding `INT64_MAX` to a count). The library side: `logcnt` entries far out of range
/// (`INT64_MAX`, `INT64_MIN`, negative) are an invalid plan, named in the message.
#[test]
fn evaluate_logcnt_extreme_values() {
    for func in [Func::Evaluate, Func::EvaluateI64] {
        for bad in [i64::MAX, i64::MIN, -1, i64::MIN + 1] {
            let s = Sizes::plan(2, 4, 6, 2, 2, 2);
            let mut call = Call::valid(func, s);
            let mut cnt = vec![0i64; 8];
            for layer in 0..2 {
                for &x in &call.in_phy2log[layer * 6..(layer + 1) * 6] {
                    cnt[layer * 4 + x as usize] += 1;
                }
            }
            cnt[5] = bad;
            call.in_logcnt = Some(cnt);
            assert_eq!(holds(&call), EPLB_STATUS_INVALID_PLAN);
            let out = run(&call);
            assert!(
                out.message.contains(&format!("logcnt[1][1] = {bad}")),
                "{}",
                out.message
            );
        }
    }
}
