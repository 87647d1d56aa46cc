//! Criterion benchmarks of whole plans for the DeepSeek-V3 shapes (58 layers x 256 experts, 288
//! slots, 8 groups), both algorithms, through the C entry point engines call.
//!
//! `cargo bench --bench plan`. Loads: the embedded DeepSeek-V3-like generator of the examples, or
//! `EPLB_BENCH_TRACE=path` for a file in the format of `../shared/traces/`.

#[path = "../examples/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use eplb::ffi::{
    EPLB_ALGORITHM_DEEPSEEK, EPLB_ALGORITHM_REFINED, EPLB_EFFORT_DEFAULT, EPLB_EFFORT_FAST,
    EPLB_EFFORT_MAX,
};
use std::hint::black_box;

use support::{PlanBuffers, V3_CASES as CASES, c_options as options, c_plan};

/// One C-API plan of `case` on loads the optimiser cannot see through.
fn plan(
    loads: &[f32],
    size: (usize, usize),
    case: &support::Case,
    opts: &eplb::ffi::eplb_options,
    out: &mut PlanBuffers,
    with_log2phy: bool,
) {
    c_plan(black_box(loads), size, case, opts, out, with_log2phy)
}

fn bench(c: &mut Criterion) {
    let (loads, layers, experts) = match std::env::var("EPLB_BENCH_TRACE") {
        Ok(path) => support::read_trace(&path).expect("trace"),
        Err(_) => (support::deepseek_like(58, 256, 8, 7), 58, 256),
    };
    let mut group = c.benchmark_group("plan");
    group.sample_size(30);
    for case in CASES {
        let mut out = PlanBuffers::new(layers, experts, case.replicas);
        for (label, algorithm, effort) in [
            ("deepseek", EPLB_ALGORITHM_DEEPSEEK, EPLB_EFFORT_DEFAULT),
            ("refined_fast", EPLB_ALGORITHM_REFINED, EPLB_EFFORT_FAST),
            ("refined", EPLB_ALGORITHM_REFINED, EPLB_EFFORT_DEFAULT),
            ("refined_max", EPLB_ALGORITHM_REFINED, EPLB_EFFORT_MAX),
        ] {
            if label == "refined_max" && case.name == "decode_144" {
                continue; // hundreds of ms: not a per-step budget
            }
            let opts = options(algorithm, effort);
            group.bench_function(format!("{}/{label}", case.name), |b| {
                b.iter(|| plan(&loads, (layers, experts), case, &opts, &mut out, true))
            });
        }
    }
    // The same plans without `log2phy` (`eplb_plan_experts` with a NULL `log2phy`): the planning
    // alone, without writing the 33-wide `log2phy` (3.9 MB for these shapes); the figures to set
    // against a native greedy planner's.
    for case in CASES {
        let mut out = PlanBuffers::new(layers, experts, case.replicas);
        for (label, algorithm) in [
            ("deepseek", EPLB_ALGORITHM_DEEPSEEK),
            ("refined", EPLB_ALGORITHM_REFINED),
        ] {
            if label == "refined" && case.name != "prefill_4x8" {
                continue; // above: writing log2phy is a small part of these plans' time
            }
            let opts = options(algorithm, EPLB_EFFORT_DEFAULT);
            group.bench_function(format!("{}_without_log2phy/{label}", case.name), |b| {
                b.iter(|| plan(&loads, (layers, experts), case, &opts, &mut out, false))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
