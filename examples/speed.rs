//! Plan time on this machine through the C entry points, robust to a busy host.
//!
//! `cargo run --release --example speed [ROUNDS]` (default 200). Plans the DeepSeek-V3 shapes on
//! the embedded DeepSeek-V3-like loads with each algorithm, with `log2phy` (`eplb_rebalance_experts`,
//! 33 entries per expert as DeepSeek sizes it) and without (`eplb_plan_experts` with a NULL
//! `log2phy`). Every variant is called once per round, round after round, so a burst of host noise
//! hits all of them alike; the table gives the fastest, the median and the 90th-percentile call.
//! The criterion bench (`cargo bench --bench plan`) measures the same calls as a mean.

#[path = "support/mod.rs"]
mod support;

use eplb::ffi::{
    EPLB_ALGORITHM_DEEPSEEK, EPLB_ALGORITHM_REFINED, EPLB_EFFORT_DEFAULT, EPLB_EFFORT_MAX,
    eplb_options,
};
use std::time::Instant;
use support::{Case, PlanBuffers, V3_CASES, c_options, c_plan, deepseek_like, fmt_time};

const LAYERS: usize = 58;
const EXPERTS: usize = 256;

/// One timed call: a shape, options, and whether `log2phy` is written.
struct Variant {
    case: &'static Case,
    label: &'static str,
    options: eplb_options,
    log2phy: bool,
    samples: Vec<f64>,
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let loads = deepseek_like(LAYERS, EXPERTS, 8, 7);
    let mut variants = Vec::new();
    for case in V3_CASES {
        let mut algorithms = vec![
            (
                "DeepSeek-compatible",
                c_options(EPLB_ALGORITHM_DEEPSEEK, EPLB_EFFORT_DEFAULT),
            ),
            (
                "refined",
                c_options(EPLB_ALGORITHM_REFINED, EPLB_EFFORT_DEFAULT),
            ),
        ];
        if case.name == "prefill_4x8" {
            algorithms.push((
                "refined, max effort",
                c_options(EPLB_ALGORITHM_REFINED, EPLB_EFFORT_MAX),
            ));
        }
        for (label, options) in algorithms {
            for log2phy in [true, false] {
                variants.push(Variant {
                    case,
                    label,
                    options,
                    log2phy,
                    samples: Vec::with_capacity(rounds),
                });
            }
        }
    }
    // Every shape has 288 slots: one set of output buffers serves all variants.
    let mut out = PlanBuffers::new(LAYERS, EXPERTS, 288);
    for _ in 0..rounds {
        for v in &mut variants {
            let start = Instant::now();
            c_plan(
                &loads,
                (LAYERS, EXPERTS),
                v.case,
                &v.options,
                &mut out,
                v.log2phy,
            );
            v.samples.push(start.elapsed().as_secs_f64());
        }
    }
    println!(
        "### Plan time, DeepSeek-V3 shapes (58 x 256 experts, 288 slots), {rounds} rounds, \
         through the C API\n"
    );
    println!("| plan | algorithm | log2phy (58 x 256 x 33) | fastest | median | p90 |");
    println!("|---|---|---|---|---|---|");
    for v in &mut variants {
        v.samples.sort_by(f64::total_cmp);
        let at = |q: f64| v.samples[((v.samples.len() - 1) as f64 * q) as usize];
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            v.case.name,
            v.label,
            if v.log2phy { "written" } else { "none" },
            fmt_time(at(0.0)),
            fmt_time(at(0.5)),
            fmt_time(at(0.9)),
        );
    }
}
