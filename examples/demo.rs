//! The main job: plans a DeepSeek-V3-sized workload with DeepSeek's algorithm and the refined
//! default, and prints balance, the gap to the lower bound, time per plan and per-GPU load charts.
//!
//! `cargo run --release --example demo [loads.json]`: without an argument it plans an embedded,
//! deterministic, realistically skewed workload (58 layers x 256 experts, 8 groups); with a file in
//! the format of `../shared/traces/` it plans those loads instead.

#[path = "support/mod.rs"]
mod support;

use eplb::metrics::plan_stats;
use eplb::{Algorithm, Effort, Options, Shape, rebalance_experts};
use support::{deepseek_like, fmt_time, read_trace, time_per_call};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn sparkline(values: &[f64], scale: f64) -> String {
    values
        .iter()
        .map(|&v| BARS[((v / scale) * 7.999).clamp(0.0, 7.0) as usize])
        .collect()
}

/// GPU loads without rebalancing: expert `e` alone on GPU `e * P / E`, no replicas.
fn unbalanced_gpu_loads(row: &[f32], gpus: usize) -> Vec<f64> {
    let mut out = vec![0.0; gpus];
    for (e, &w) in row.iter().enumerate() {
        out[e * gpus / row.len()] += f64::from(w);
    }
    out
}

struct Scenario {
    name: &'static str,
    replicas: usize,
    groups: usize,
    nodes: usize,
    gpus: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (loads, layers, experts, source) = match args.first() {
        Some(path) => match read_trace(path) {
            Ok((loads, layers, experts)) => (loads, layers, experts, path.clone()),
            Err(e) => {
                eprintln!("demo: {e}");
                std::process::exit(2);
            }
        },
        None => (
            deepseek_like(58, 256, 8, 7),
            58,
            256,
            "embedded DeepSeek-V3-like loads (seed 7)".to_string(),
        ),
    };
    println!(
        "eplb {} demo: {source}\n{layers} MoE layers x {experts} experts, 8 groups\n",
        env!("CARGO_PKG_VERSION")
    );
    let scenarios = [
        Scenario {
            name: "prefill: 288 slots on 4 nodes x 8 GPUs (9 per GPU)",
            replicas: 288,
            groups: 8,
            nodes: 4,
            gpus: 32,
        },
        Scenario {
            name: "decode: 288 slots on 18 nodes x 8 GPUs (2 per GPU)",
            replicas: 288,
            groups: 8,
            nodes: 18,
            gpus: 144,
        },
    ];
    for sc in &scenarios {
        let shape = Shape::new(layers, experts, sc.replicas, sc.groups, sc.nodes, sc.gpus)
            .expect("valid demo shape");
        let policy = match shape.policy() {
            eplb::Policy::Hierarchical => "hierarchical policy",
            eplb::Policy::Global => "global policy: num_groups % num_nodes != 0",
        };
        println!("{} ({policy})", sc.name);
        // Before balancing.
        let mut worst = (f64::INFINITY, 0usize);
        let (mut sum_mean, mut sum_max) = (0.0, 0.0);
        for layer in 0..layers {
            let g = unbalanced_gpu_loads(&loads[layer * experts..(layer + 1) * experts], sc.gpus);
            let max = g.iter().copied().fold(0.0, f64::max);
            let mean = g.iter().sum::<f64>() / sc.gpus as f64;
            sum_mean += mean;
            sum_max += max;
            if mean / max < worst.0 {
                worst = (mean / max, layer);
            }
        }
        println!(
            "  {:<24} {:>12} {:>12} {:>13} {:>11}",
            "plan", "balancedness", "worst layer", "gap to bound", "time/plan"
        );
        println!(
            "  {:<24} {:>12.4} {:>12.4} {:>13} {:>11}",
            "no rebalancing",
            sum_mean / sum_max,
            worst.0,
            "-",
            "-"
        );
        let chart_layer = worst.1;
        let before = unbalanced_gpu_loads(
            &loads[chart_layer * experts..(chart_layer + 1) * experts],
            sc.gpus,
        );
        let mut charts = vec![("no rebalancing".to_string(), before)];
        for (label, algorithm, effort) in [
            (
                "DeepSeek (compatible)",
                Algorithm::DeepSeek,
                Effort::Default,
            ),
            ("refined (default)", Algorithm::Refined, Effort::Default),
            ("refined (max effort)", Algorithm::Refined, Effort::Max),
        ] {
            let options = Options {
                algorithm,
                effort,
                ..Options::default()
            };
            let plan = rebalance_experts(&loads, &shape, &options).expect("plan");
            let stats = plan_stats(&loads, &shape, &plan.phy2log, None, None, None).expect("stats");
            let seconds = time_per_call(0.5, || rebalance_experts(&loads, &shape, &options));
            println!(
                "  {:<24} {:>12.4} {:>12.4} {:>12.3}% {:>11}",
                label,
                stats.balancedness,
                stats.worst_layer_balancedness,
                stats.gap * 100.0,
                fmt_time(seconds)
            );
            let r = sc.replicas;
            let mut gpus = Vec::new();
            let row: Vec<f64> = loads[chart_layer * experts..(chart_layer + 1) * experts]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            eplb::metrics::gpu_loads(
                &row,
                &plan.phy2log[chart_layer * r..(chart_layer + 1) * r],
                &plan.logcnt[chart_layer * experts..(chart_layer + 1) * experts],
                shape.slots_per_gpu(),
                &mut gpus,
            );
            charts.push((label.to_string(), gpus));
        }
        let scale = charts[0].1.iter().copied().fold(0.0, f64::max);
        let mean = charts[0].1.iter().sum::<f64>() / sc.gpus as f64;
        println!(
            "  per-GPU load of layer {chart_layer} (the worst before balancing); one bar per GPU, full bar = busiest GPU before balancing = {:.2}x mean",
            scale / mean
        );
        for (label, values) in &charts {
            let line = sparkline(values, scale);
            let chars: Vec<char> = line.chars().collect();
            for (i, chunk) in chars.chunks(72).enumerate() {
                let head = if i == 0 { label.as_str() } else { "" };
                println!("    {:<22} {}", head, chunk.iter().collect::<String>());
            }
        }
        println!();
    }
}
