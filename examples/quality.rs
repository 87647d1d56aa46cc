//! The quality table: balancedness, gap to the lower bound and time per plan for DeepSeek's
//! algorithm, the seed idea (greedy + at most 20 heaviest/lightest swaps), the refined default and
//! maximum effort, over several load families and the model shapes of DESIGN.md section 5.
//!
//! `cargo run --release --example quality [--quick] [--packing]` prints a Markdown table. The real
//! DeepSeek-V3 traces in `../shared/traces/` are included when present. `--quick` times each plan
//! less; `--packing` prints only the `balanced_packing` instances.

#[path = "support/mod.rs"]
mod support;

use eplb::metrics::{gpu_loads, plan_stats};
use eplb::{Algorithm, Effort, Options, Plan, Shape, rebalance_experts};
use std::time::Instant;
use support::{Family, fmt_time, read_trace, shared_trace, time_per_call};

/// Loads of a recorded trace and its layer count.
type Trace = (Vec<f32>, usize);

struct Model {
    name: &'static str,
    layers: usize,
    experts: usize,
    replicas: usize,
    groups: usize,
    nodes: usize,
    gpus: usize,
}

const MODELS: &[Model] = &[
    Model {
        name: "DeepSeek-V3 prefill, 4 nodes x 8 GPUs (hierarchical)",
        layers: 58,
        experts: 256,
        replicas: 288,
        groups: 8,
        nodes: 4,
        gpus: 32,
    },
    Model {
        name: "DeepSeek-V3, 32 GPUs (global)",
        layers: 58,
        experts: 256,
        replicas: 288,
        groups: 8,
        nodes: 3,
        gpus: 32,
    },
    Model {
        name: "DeepSeek-V3 decode, 144 GPUs (global, 2 slots/GPU)",
        layers: 58,
        experts: 256,
        replicas: 288,
        groups: 8,
        nodes: 18,
        gpus: 144,
    },
    Model {
        name: "Kimi K2, 416 slots on 32 GPUs",
        layers: 60,
        experts: 384,
        replicas: 416,
        groups: 1,
        nodes: 4,
        gpus: 32,
    },
    Model {
        name: "Kimi K2, 448 slots on 64 GPUs",
        layers: 60,
        experts: 384,
        replicas: 448,
        groups: 1,
        nodes: 8,
        gpus: 64,
    },
    Model {
        name: "Qwen3-235B, 160 slots on 32 GPUs",
        layers: 94,
        experts: 128,
        replicas: 160,
        groups: 1,
        nodes: 4,
        gpus: 32,
    },
    Model {
        name: "Qwen3-30B, 136 slots on 8 GPUs",
        layers: 48,
        experts: 128,
        replicas: 136,
        groups: 1,
        nodes: 1,
        gpus: 8,
    },
    Model {
        name: "Mixtral 8x7B, 16 slots on 8 GPUs",
        layers: 32,
        experts: 8,
        replicas: 16,
        groups: 1,
        nodes: 1,
        gpus: 8,
    },
];

/// The seed idea, faithfully: DeepSeek's plan, then inside each node at most 20 rounds of the best
/// swap between the heaviest and the lightest GPU (pack sizes unchanged).
fn seed_plan(loads: &[f32], shape: &Shape) -> Plan {
    let deepseek = Options {
        algorithm: Algorithm::DeepSeek,
        ..Options::default()
    };
    let mut plan = rebalance_experts(loads, shape, &deepseek).expect("plan");
    let (e, r, k) = (shape.num_logical, shape.num_replicas, shape.slots_per_gpu());
    let (_, n) = shape.effective_groups_nodes();
    let gpus_per_node = shape.num_gpus / n;
    for layer in 0..shape.num_layers {
        let row: Vec<f64> = loads[layer * e..(layer + 1) * e]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let cnt = plan.logcnt[layer * e..(layer + 1) * e].to_vec();
        let slot_load = |x: i64| row[x as usize] / cnt[x as usize] as f64;
        let phy = &mut plan.phy2log[layer * r..(layer + 1) * r];
        for node in phy.chunks_exact_mut(gpus_per_node * k) {
            for _ in 0..20 {
                let mut gpus = Vec::new();
                gpu_loads(&row, node, &cnt, k, &mut gpus);
                let (mut hi, mut lo) = (0, 0);
                for g in 0..gpus.len() {
                    if gpus[g] > gpus[hi] {
                        hi = g;
                    }
                    if gpus[g] < gpus[lo] {
                        lo = g;
                    }
                }
                let diff = gpus[hi] - gpus[lo];
                let mut best: Option<(f64, usize, usize)> = None;
                for a in hi * k..(hi + 1) * k {
                    for b in lo * k..(lo + 1) * k {
                        let d = slot_load(node[a]) - slot_load(node[b]);
                        let spread = (diff - 2.0 * d).abs();
                        if d > 0.0 && spread < diff && best.is_none_or(|(s, _, _)| spread < s) {
                            best = Some((spread, a, b));
                        }
                    }
                }
                match best {
                    Some((_, a, b)) => node.swap(a, b),
                    None => break,
                }
            }
        }
    }
    plan
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = if quick { 0.05 } else { 0.3 };
    if std::env::args().any(|a| a == "--packing") {
        packing_instances(budget);
        return;
    }
    let mut workloads: Vec<(String, Option<Trace>)> = vec![
        (Family::Uniform.name(), None),
        (Family::LogNormal(0.5).name(), None),
        (Family::LogNormal(1.0).name(), None),
        (Family::LogNormal(2.0).name(), None),
        (Family::Zipf(1.0).name(), None),
        (Family::Sparse.name(), None),
        (Family::DeepSeekLike.name(), None),
    ];
    for name in ["prefill_in1024.json", "decode_in1000out1000.json"] {
        if let Some(path) = shared_trace(name) {
            match read_trace(&path) {
                Ok((loads, layers, _)) => {
                    workloads.push((format!("trace {name}"), Some((loads, layers))))
                }
                Err(e) => eprintln!("quality: skipping {path}: {e}"),
            }
        }
    }
    let families = [
        Family::Uniform,
        Family::LogNormal(0.5),
        Family::LogNormal(1.0),
        Family::LogNormal(2.0),
        Family::Zipf(1.0),
        Family::Sparse,
        Family::DeepSeekLike,
    ];
    println!(
        "eplb {} quality table (balancedness = sum mean / sum max GPU load; gap = sum max / sum lower bound - 1)\n",
        env!("CARGO_PKG_VERSION")
    );
    for model in MODELS {
        println!(
            "### {}: {} layers x {} experts, {} slots, {} groups",
            model.name, model.layers, model.experts, model.replicas, model.groups
        );
        println!();
        println!(
            "| loads | DeepSeek | seed (greedy + 20 swaps) | refined default | refined max effort |"
        );
        println!("|---|---|---|---|---|");
        for (index, (name, trace)) in workloads.iter().enumerate() {
            let (loads, layers) = match trace {
                Some((loads, layers)) => {
                    if model.experts != 256 {
                        continue; // the traces are DeepSeek-V3 loads
                    }
                    (loads.clone(), *layers)
                }
                None => (
                    families[index].generate(
                        model.layers,
                        model.experts,
                        model.groups.max(8).min(model.experts),
                        11 + index as u64,
                    ),
                    model.layers,
                ),
            };
            let shape = Shape::new(
                layers,
                model.experts,
                model.replicas,
                model.groups,
                model.nodes,
                model.gpus,
            )
            .expect("shape");
            let mut cells = Vec::new();
            let variants: [(&str, Option<Options>); 4] = [
                (
                    "deepseek",
                    Some(Options {
                        algorithm: Algorithm::DeepSeek,
                        ..Options::default()
                    }),
                ),
                ("seed", None),
                ("default", Some(Options::default())),
                (
                    "max",
                    Some(Options {
                        effort: Effort::Max,
                        ..Options::default()
                    }),
                ),
            ];
            for (_, options) in variants {
                let (plan, seconds) = match options {
                    Some(o) => {
                        let plan = rebalance_experts(&loads, &shape, &o).expect("plan");
                        (
                            plan,
                            time_per_call(budget, || rebalance_experts(&loads, &shape, &o)),
                        )
                    }
                    None => (
                        seed_plan(&loads, &shape),
                        time_per_call(budget, || seed_plan(&loads, &shape)),
                    ),
                };
                let stats =
                    plan_stats(&loads, &shape, &plan.phy2log, None, None, None).expect("stats");
                cells.push(format!(
                    "{:.4} / {:.2}% / {}",
                    stats.balancedness,
                    stats.gap * 100.0,
                    fmt_time(seconds)
                ));
            }
            println!("| {name} | {} |", cells.join(" | "));
        }
        println!();
    }
    println!(
        "Each cell: balancedness / gap to the lower bound / time per plan (all layers, one core).\n"
    );
    packing_instances(budget);
}

/// `balanced_packing` alone: instances of 256 to 288 log-normal items (spread 1) into 32 packs.
fn packing_instances(budget: f64) {
    println!(
        "### balanced_packing: 200 instances, 256 to 288 items (log-normal, spread 1) into 32 packs\n"
    );
    println!(
        "Bound: max(total / 32, largest item + the n/32 - 1 lightest items), since every pack holds n/32 items.\n"
    );
    println!(
        "Time per instance: the median of its calls over interleaved passes (all instances, then again).\n"
    );
    println!(
        "| algorithm | mean gap to the bound | worst gap | time per instance: mean / p90 / slowest |"
    );
    println!("|---|---|---|---|");
    let mut rng = support::Rng::new(2024);
    let instances: Vec<Vec<f32>> = (0..200)
        .map(|_| {
            let n = 32 * (8 + rng.below(2));
            (0..n)
                .map(|_| (rng.normal().exp() * 1000.0) as f32)
                .collect()
        })
        .collect();
    for (label, options) in [
        (
            "DeepSeek (greedy)",
            Options {
                algorithm: Algorithm::DeepSeek,
                ..Options::default()
            },
        ),
        (
            "refined (fast)",
            Options {
                effort: Effort::Fast,
                ..Options::default()
            },
        ),
        ("refined (default)", Options::default()),
        (
            "refined (max effort)",
            Options {
                effort: Effort::Max,
                ..Options::default()
            },
        ),
    ] {
        let (mut sum_gap, mut worst) = (0.0, 0.0f64);
        for items in &instances {
            let n = items.len();
            let packing = eplb::balanced_packing(items, 1, n, 32, &options).expect("packing");
            let mut sums = [0.0f64; 32];
            for (i, &p) in packing.pack_index.iter().enumerate() {
                sums[p as usize] += f64::from(items[i]);
            }
            let total: f64 = sums.iter().sum();
            let mut sorted: Vec<f64> = items.iter().map(|&v| f64::from(v)).collect();
            sorted.sort_by(f64::total_cmp);
            // The pack holding the largest item also holds n/32 - 1 others, at least the lightest.
            let per_pack = n / 32;
            let bound =
                (total / 32.0).max(sorted[n - 1] + sorted[..per_pack - 1].iter().sum::<f64>());
            let gap = sums.iter().copied().fold(0.0, f64::max) / bound - 1.0;
            sum_gap += gap;
            worst = worst.max(gap);
        }
        // Interleaved passes over all instances, so that a burst of host noise touches a few
        // calls of every instance rather than every call of one; each instance's time is the
        // median of its calls.
        let start = Instant::now();
        for items in &instances {
            std::hint::black_box(eplb::balanced_packing(items, 1, items.len(), 32, &options))
                .expect("packing");
        }
        let pass = start.elapsed().as_secs_f64().max(1e-6);
        let passes = ((budget * 10.0 / pass) as usize).clamp(5, 200);
        let mut calls = vec![Vec::with_capacity(passes); instances.len()];
        for _ in 0..passes {
            for (items, samples) in instances.iter().zip(&mut calls) {
                let t = Instant::now();
                std::hint::black_box(eplb::balanced_packing(items, 1, items.len(), 32, &options))
                    .expect("packing");
                samples.push(t.elapsed().as_secs_f64());
            }
        }
        let mut seconds: Vec<f64> = calls
            .iter_mut()
            .map(|samples| {
                samples.sort_by(f64::total_cmp);
                samples[samples.len() / 2]
            })
            .collect();
        let count = instances.len() as f64;
        let mean = seconds.iter().sum::<f64>() / count;
        seconds.sort_by(f64::total_cmp);
        println!(
            "| {label} | {:.4}% | {:.4}% | {} / {} / {} |",
            sum_gap / count * 100.0,
            worst * 100.0,
            fmt_time(mean),
            fmt_time(seconds[seconds.len() * 9 / 10]),
            fmt_time(seconds[seconds.len() - 1])
        );
    }
}
