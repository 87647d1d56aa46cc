//! Criterion benchmark of the locality budget (issue 6): the whole DeepSeek-V3 prefill plan (58
//! layers x 256 experts, 288 slots, 8 groups, 4 nodes x 8 GPUs) with `max_off_home_share` 0 (the
//! strict hierarchical plan), 5%, 20% (the target: under 1 ms on one core) and 100%.
//!
//! `cargo bench --bench locality`. Loads: the real prefill trace in `../shared/traces/` when
//! present, else the embedded DeepSeek-V3-like generator of the examples; `EPLB_BENCH_TRACE=path`
//! picks another file in the same format.

#[path = "../examples/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use eplb::{Options, Shape, rebalance_experts};
use std::hint::black_box;

fn loads() -> (Vec<f32>, usize, String) {
    let path = std::env::var("EPLB_BENCH_TRACE")
        .ok()
        .or_else(|| support::shared_trace("prefill_in1024.json"));
    if let Some(path) = path {
        let (loads, layers, experts) = support::read_trace(&path).expect("trace");
        assert_eq!(experts, 256, "{path}: DeepSeek-V3 traces have 256 experts");
        return (loads, layers, path);
    }
    (
        support::deepseek_like(58, 256, 8, 7),
        58,
        "DeepSeek-V3-like (seed 7)".to_string(),
    )
}

fn bench(c: &mut Criterion) {
    let (loads, layers, source) = loads();
    eprintln!("locality bench: {layers} layers from {source}");
    let shape = Shape::new(layers, 256, 288, 8, 4, 32).expect("shape");
    let mut group = c.benchmark_group("locality");
    group.sample_size(30);
    for (label, budget) in [
        ("prefill_4x8/strict", 0.0),
        ("prefill_4x8/budget_5", 0.05),
        ("prefill_4x8/budget_20", 0.20),
        ("prefill_4x8/budget_100", 1.0),
    ] {
        let options = Options {
            max_off_home_share: budget,
            ..Options::default()
        };
        group.bench_function(label, |b| {
            b.iter(|| rebalance_experts(black_box(&loads), &shape, &options).expect("plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
