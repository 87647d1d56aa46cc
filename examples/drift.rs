//! The drift benchmark of migration-aware re-planning: sequences of load windows on DeepSeek-V3
//! shapes, each window re-planned from the previous window's plan, against planning every window
//! from scratch.
//!
//! `cargo run --release --example drift [prefill|decode] [--markdown]`
//!
//! Sequences (58 layers x 256 experts, 8 groups):
//! - slow drift: a random walk on each expert's popularity (2% multiplicative noise per window);
//! - drift + jumps: the same, with the whole workload replaced every 6th window;
//! - real traces (when `../shared/traces/` is present): the prefill trace with the same 2% drift,
//!   and the prefill and decode traces alternating (every re-plan is a workload change).
//!
//! For each re-planning mode the table gives the balancedness (`sum mean / sum max` GPU load) on
//! the window a plan is made from and on the next window, the expert weights moved per re-plan
//! (absolute, as a share of all copies, and against planning from scratch), and the CPU time per
//! call (the plan from scratch included). DeepSeek's algorithm re-plans by relabelling only; its
//! rows compare with DeepSeek's own plans from scratch.

#[path = "support/mod.rs"]
mod support;

use eplb::metrics::gpu_loads;
use eplb::plan::plan_experts;
use eplb::{Algorithm, Options, Plan, Shape, rebalance_experts};
use support::{Rng, deepseek_like, fmt_time, read_trace, shared_trace};

const LAYERS: usize = 58;
const EXPERTS: usize = 256;
const GROUPS: usize = 8;

struct Scenario {
    name: &'static str,
    replicas: usize,
    nodes: usize,
    gpus: usize,
}

/// `sum_l mean / sum_l max` pieces of a plan on `loads`.
fn balance_sums(loads: &[f32], shape: &Shape, plan: &Plan) -> (f64, f64) {
    let (e, r, k) = (shape.num_logical, shape.num_replicas, shape.slots_per_gpu());
    let mut gpus = Vec::new();
    let (mut mean, mut max) = (0.0, 0.0);
    for layer in 0..shape.num_layers {
        let row: Vec<f64> = loads[layer * e..(layer + 1) * e]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        gpu_loads(
            &row,
            &plan.phy2log[layer * r..(layer + 1) * r],
            &plan.logcnt[layer * e..(layer + 1) * e],
            k,
            &mut gpus,
        );
        mean += gpus.iter().sum::<f64>() / gpus.len() as f64;
        max += gpus.iter().copied().fold(0.0, f64::max);
    }
    (mean, max)
}

/// Windows of a random walk on each expert's popularity starting from `base`; `jump_every`
/// replaces the workload by a fresh one every that many windows.
fn drift_windows(
    base: &[f32],
    windows: usize,
    jump_every: Option<usize>,
    seed: u64,
) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let mut pop: Vec<f64> = base.iter().map(|&v| f64::from(v)).collect();
    let mut out = Vec::with_capacity(windows);
    for t in 0..windows {
        if t > 0 {
            if jump_every.is_some_and(|j| t % j == 0) {
                let fresh =
                    deepseek_like(LAYERS, EXPERTS, GROUPS, seed.wrapping_add(1000 + t as u64));
                pop = fresh.iter().map(|&v| f64::from(v)).collect();
            } else {
                for p in pop.iter_mut() {
                    *p *= (0.02 * rng.normal()).exp();
                }
            }
        }
        out.push(pop.iter().map(|&v| v.round() as f32).collect());
    }
    out
}

/// CPU time of this thread (the machine running the benchmark may be shared, so wall-clock time
/// would measure the neighbours too).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[derive(Default)]
struct Row {
    planned: (f64, f64),
    next: (f64, f64),
    moved: usize,
    total: usize,
    seconds: f64,
    calls: usize,
}

/// Plans window 0 from scratch, then re-plans windows 1.. (from scratch when `tolerance` is None).
fn run(windows: &[Vec<f32>], shape: &Shape, algorithm: Algorithm, tolerance: Option<f64>) -> Row {
    let options = Options {
        algorithm,
        max_balance_loss: tolerance.unwrap_or(0.0),
        ..Options::default()
    };
    let mut row = Row::default();
    let mut plan = rebalance_experts(&windows[0], shape, &options).expect("plan");
    for t in 1..windows.len() {
        let start = cpu_seconds();
        let (next, moved) = match tolerance {
            None => {
                let p = rebalance_experts(&windows[t], shape, &options).expect("plan");
                let mut m = eplb::metrics::Migration::default();
                let r = shape.num_replicas;
                for (a, b) in p.phy2log.chunks_exact(r).zip(plan.phy2log.chunks_exact(r)) {
                    m.add_layer(a, b, shape.slots_per_gpu());
                }
                (p, m)
            }
            Some(_) => {
                let (p, m) = plan_experts(&windows[t], shape, &options, Some(&plan.phy2log))
                    .expect("replan");
                (p, m.expect("migration stats"))
            }
        };
        row.seconds += cpu_seconds() - start;
        row.calls += 1;
        let a = balance_sums(&windows[t], shape, &next);
        row.planned = (row.planned.0 + a.0, row.planned.1 + a.1);
        if t + 1 < windows.len() {
            let b = balance_sums(&windows[t + 1], shape, &next);
            row.next = (row.next.0 + b.0, row.next.1 + b.1);
        }
        row.moved += moved.weights_moved;
        row.total += moved.weights_total;
        plan = next;
    }
    row
}

fn print_table(title: &str, windows: &[Vec<f32>], shape: &Shape, markdown: bool) {
    let rows = [
        (
            "from scratch",
            run(windows, shape, Algorithm::Refined, None),
        ),
        (
            "tolerance 0",
            run(windows, shape, Algorithm::Refined, Some(0.0)),
        ),
        (
            "tolerance 0.1%",
            run(windows, shape, Algorithm::Refined, Some(0.001)),
        ),
        (
            "tolerance 1%",
            run(windows, shape, Algorithm::Refined, Some(0.01)),
        ),
        (
            "DeepSeek, scratch",
            run(windows, shape, Algorithm::DeepSeek, None),
        ),
        (
            "DeepSeek, relabelled",
            run(windows, shape, Algorithm::DeepSeek, Some(0.0)),
        ),
    ];
    let header = [
        "re-plan",
        "bal planned",
        "bal next",
        "moved/re-plan",
        "of all",
        "vs scratch",
        "CPU/call",
    ];
    if markdown {
        println!("\n{title} ({} re-plans)\n", windows.len() - 1);
        println!("| {} |", header.join(" | "));
        println!("|{}", "---|".repeat(header.len()));
    } else {
        println!("  {title} ({} re-plans)", windows.len() - 1);
        println!(
            "    {:<20} {:>12} {:>12} {:>14} {:>9} {:>11} {:>10}",
            header[0], header[1], header[2], header[3], header[4], header[5], header[6]
        );
    }
    for (i, (label, r)) in rows.iter().enumerate() {
        // DeepSeek's rows compare with DeepSeek's own plans from scratch.
        let scratch_moved = rows[if i >= 4 { 4 } else { 0 }].1.moved.max(1) as f64;
        let cells = [
            label.to_string(),
            format!("{:.4}", r.planned.0 / r.planned.1),
            if r.next.1 > 0.0 {
                format!("{:.4}", r.next.0 / r.next.1)
            } else {
                "-".to_string()
            },
            format!("{:.1}", r.moved as f64 / r.calls as f64),
            format!("{:.1}%", 100.0 * r.moved as f64 / r.total.max(1) as f64),
            format!("{:.1}%", 100.0 * r.moved as f64 / scratch_moved),
            fmt_time(r.seconds / r.calls as f64),
        ];
        if markdown {
            println!("| {} |", cells.join(" | "));
        } else {
            println!(
                "    {:<20} {:>12} {:>12} {:>14} {:>9} {:>11} {:>10}",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
            );
        }
    }
}

fn main() {
    println!(
        "eplb {} drift benchmark: {LAYERS} layers x {EXPERTS} experts, {GROUPS} groups; each window re-planned from the previous plan\n",
        env!("CARGO_PKG_VERSION")
    );
    let scenarios = [
        Scenario {
            name: "prefill: 288 slots, 4 nodes x 8 GPUs (hierarchical)",
            replicas: 288,
            nodes: 4,
            gpus: 32,
        },
        Scenario {
            name: "decode: 288 slots, 144 GPUs (global)",
            replicas: 288,
            nodes: 18,
            gpus: 144,
        },
    ];
    let synthetic = deepseek_like(LAYERS, EXPERTS, GROUPS, 11);
    let slow = drift_windows(&synthetic, 11, None, 1);
    let jumps = drift_windows(&synthetic, 19, Some(6), 2);
    let traces = match (
        shared_trace("prefill_in1024.json"),
        shared_trace("decode_in1000out1000.json"),
    ) {
        (Some(a), Some(b)) => match (read_trace(&a), read_trace(&b)) {
            (Ok((pa, la, ea)), Ok((pb, lb, eb)))
                if (la, ea) == (LAYERS, EXPERTS) && (lb, eb) == (LAYERS, EXPERTS) =>
            {
                Some((pa, pb))
            }
            _ => None,
        },
        _ => None,
    };
    // `--markdown` prints markdown tables; `prefill` or `decode` runs one scenario.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let markdown = args.iter().any(|a| a == "--markdown");
    let only = args.iter().find(|a| !a.starts_with("--")).cloned();
    for sc in &scenarios {
        if only.as_deref().is_some_and(|o| !sc.name.starts_with(o)) {
            continue;
        }
        let shape =
            Shape::new(LAYERS, EXPERTS, sc.replicas, GROUPS, sc.nodes, sc.gpus).expect("shape");
        if markdown {
            println!("\n**{}**", sc.name);
        } else {
            println!("{}", sc.name);
        }
        print_table(
            "synthetic, slow drift (2% per window)",
            &slow,
            &shape,
            markdown,
        );
        print_table(
            "synthetic, drift + a workload change every 6th window",
            &jumps,
            &shape,
            markdown,
        );
        if let Some((prefill, decode)) = &traces {
            let real_drift = drift_windows(prefill, 11, None, 3);
            print_table(
                "real prefill trace, slow drift (2% per window)",
                &real_drift,
                &shape,
                markdown,
            );
            let pair: Vec<Vec<f32>> = (0..5)
                .map(|i| {
                    if i % 2 == 0 {
                        prefill.clone()
                    } else {
                        decode.clone()
                    }
                })
                .collect();
            print_table(
                "real traces, prefill and decode alternating",
                &pair,
                &shape,
                markdown,
            );
        }
        println!();
    }
    if traces.is_none() {
        println!("(../shared/traces/ not found: real-trace rows skipped)");
    }
}
