//! The locality budget's trade-off (issue 6): balance against the share of the load that leaves its
//! home node, for DeepSeek-V3 prefill shapes (288 slots, 8 groups, 32 GPUs on 4 and 8 nodes).
//!
//! `cargo run --release --example locality` prints, for budgets 0 to 100% of
//! `Options::max_off_home_share`, on the real traces in `../shared/traces/` when present and on
//! synthetic skewed loads: balancedness, the worst layer, the measured off-home share (mean and max
//! over layers), the water-filling bound's balancedness and the time per plan, next to the strict
//! hierarchical (budget 0) and global policies. It writes the curves to `docs/locality.svg`.
//! `cargo run --release --example locality -- --no-timing` skips the timings.

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;

use eplb::metrics::plan_stats;
use eplb::plan::locality::{best_split_node_loads, share_for_node_balance, water_filling_bound};
use eplb::{Options, Shape, rebalance_experts};
use support::{Family, deepseek_like, fmt_time, read_trace, shared_trace, time_per_call};

const BUDGETS: [f64; 7] = [0.0, 0.01, 0.02, 0.05, 0.10, 0.20, 1.0];
const NODES: [usize; 2] = [4, 8];
const REPLICAS: usize = 288;
const GROUPS: usize = 8;
const GPUS: usize = 32;

struct Workload {
    name: String,
    loads: Vec<f32>,
    layers: usize,
}

/// One point of a curve.
#[derive(Clone, Copy)]
struct Point {
    budget: f64,
    balancedness: f64,
    mean_off_home: f64,
    bound_balancedness: f64,
    bound_off_home: f64,
}

struct Curve {
    workload: String,
    nodes: usize,
    points: Vec<Point>,
    global: f64,
}

fn workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for (file, name) in [
        ("prefill_in1024.json", "prefill trace"),
        ("decode_in1000out1000.json", "decode trace"),
    ] {
        match shared_trace(file).map(|p| read_trace(&p)) {
            Some(Ok((loads, layers, 256))) => out.push(Workload {
                name: name.to_string(),
                loads,
                layers,
            }),
            Some(Ok((_, _, experts))) => {
                eprintln!("locality: skipping {file}: {experts} experts, not 256")
            }
            Some(Err(e)) => eprintln!("locality: skipping {file}: {e}"),
            _ => eprintln!("locality: ../shared/traces/{file} not found; skipped"),
        }
    }
    out.push(Workload {
        name: "synthetic (deepseek-like)".to_string(),
        loads: deepseek_like(58, 256, GROUPS, 7),
        layers: 58,
    });
    out.push(Workload {
        name: "synthetic (zipf a=1.2)".to_string(),
        loads: Family::Zipf(1.2).generate(58, 256, GROUPS, 11),
        layers: 58,
    });
    out
}

fn main() {
    let timing = !std::env::args().any(|a| a == "--no-timing");
    println!(
        "eplb {} locality budget: {REPLICAS} slots, {GROUPS} groups, {GPUS} GPUs (DeepSeek-V3 prefill shapes)",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "off-home: share of a layer's load on replicas outside their expert's home node (mean / max over layers)"
    );
    println!(
        "bound: the water-filling bound's balancedness (issue 6), and the mean off-home share it needs;"
    );
    println!("vs bound: balancedness / bound - 1\n");
    let mut curves = Vec::new();
    for w in workloads() {
        for &nodes in &NODES {
            curves.push(run(&w, nodes, timing));
        }
    }
    // The chart leaves out the Zipf loads: their low balancedness would squeeze the other curves.
    let charted: Vec<Curve> = curves
        .into_iter()
        .filter(|c| !c.workload.contains("zipf"))
        .collect();
    let svg = chart(&charted);
    let path = format!("{}/docs/locality.svg", env!("CARGO_MANIFEST_DIR"));
    if let Err(e) = std::fs::create_dir_all(format!("{}/docs", env!("CARGO_MANIFEST_DIR")))
        .and_then(|()| std::fs::write(&path, svg))
    {
        eprintln!("locality: cannot write {path}: {e}");
        std::process::exit(1);
    }
    println!("wrote docs/locality.svg");
}

fn run(w: &Workload, nodes: usize, timing: bool) -> Curve {
    let shape = Shape::new(w.layers, 256, REPLICAS, GROUPS, nodes, GPUS).expect("valid shape");
    let rows: Vec<Vec<f64>> = w
        .loads
        .chunks_exact(256)
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let group_size = 256 / GROUPS;
    let needed: Vec<f64> = rows
        .iter()
        .map(|row| {
            let groups: Vec<f64> = row
                .chunks_exact(group_size)
                .map(|c| c.iter().sum())
                .collect();
            share_for_node_balance(&best_split_node_loads(&groups, nodes))
        })
        .collect();
    let mut sorted = needed.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{} ({} layers), {nodes} nodes x {} GPUs: share needed for perfect node balance: median {:.1}%, max {:.1}%",
        w.name,
        w.layers,
        GPUS / nodes,
        100.0 * sorted[sorted.len() / 2],
        100.0 * sorted[sorted.len() - 1]
    );
    println!(
        "  {:<18} {:>12} {:>11} {:>17} {:>8} {:>9} {:>9} {:>10}",
        "plan",
        "balancedness",
        "worst layer",
        "off-home mean/max",
        "bound",
        "bound off",
        "vs bound",
        "time/plan"
    );
    let mean_sum: f64 = rows
        .iter()
        .map(|r| r.iter().sum::<f64>() / GPUS as f64)
        .sum();
    let mut points = Vec::new();
    for &budget in &BUDGETS {
        let options = Options {
            max_off_home_share: budget,
            ..Options::default()
        };
        let plan = rebalance_experts(&w.loads, &shape, &options).expect("plan");
        let stats = plan_stats(
            &w.loads,
            &shape,
            &plan.phy2log,
            Some(&plan.logcnt),
            Some(&plan.group_node),
            None,
        )
        .expect("stats");
        let bound_sum: f64 = rows
            .iter()
            .map(|r| water_filling_bound(r, &shape, budget))
            .sum();
        let bound = mean_sum / bound_sum;
        let bound_off = needed.iter().map(|&s| s.min(budget)).sum::<f64>() / needed.len() as f64;
        let time = if timing {
            fmt_time(time_per_call(0.2, || {
                rebalance_experts(&w.loads, &shape, &options).expect("plan")
            }))
        } else {
            "-".to_string()
        };
        let label = if budget == 0.0 {
            "strict (budget 0)".to_string()
        } else {
            format!("budget {:.0}%", budget * 100.0)
        };
        let over = if stats.max_off_home_share > budget {
            " OVER BUDGET"
        } else {
            ""
        };
        println!(
            "  {:<18} {:>12.4} {:>11.4} {:>8.2}%/{:>6.2}% {:>8.4} {:>8.2}% {:>+8.2}% {:>10}{over}",
            label,
            stats.balancedness,
            stats.worst_layer_balancedness,
            100.0 * stats.mean_off_home_share,
            100.0 * stats.max_off_home_share,
            bound,
            100.0 * bound_off,
            100.0 * (stats.balancedness / bound - 1.0),
            time
        );
        points.push(Point {
            budget,
            balancedness: stats.balancedness,
            mean_off_home: stats.mean_off_home_share,
            bound_balancedness: bound,
            bound_off_home: bound_off,
        });
    }
    // The global policy on the same GPUs: 3 nodes do not divide 8 groups.
    let global_shape = Shape::new(w.layers, 256, REPLICAS, GROUPS, 3, GPUS).expect("valid shape");
    let options = Options::default();
    let plan = rebalance_experts(&w.loads, &global_shape, &options).expect("plan");
    let stats = plan_stats(
        &w.loads,
        &global_shape,
        &plan.phy2log,
        Some(&plan.logcnt),
        None,
        None,
    )
    .expect("stats");
    let bound_sum: f64 = rows
        .iter()
        .map(|r| water_filling_bound(r, &global_shape, 0.0))
        .sum();
    let time = if timing {
        fmt_time(time_per_call(0.2, || {
            rebalance_experts(&w.loads, &global_shape, &options).expect("plan")
        }))
    } else {
        "-".to_string()
    };
    println!(
        "  {:<18} {:>12.4} {:>11.4} {:>17} {:>8.4} {:>9} {:>+8.2}% {:>10}\n",
        "global policy",
        stats.balancedness,
        stats.worst_layer_balancedness,
        "(no home)",
        mean_sum / bound_sum,
        "",
        100.0 * (stats.balancedness * bound_sum / mean_sum - 1.0),
        time
    );
    Curve {
        workload: w.name.clone(),
        nodes,
        points,
        global: stats.balancedness,
    }
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Hand-written SVG: one panel per node count, balancedness against mean off-home share, one solid
/// curve per workload (the plans, a dot per budget), its water-filling bound dashed and the global
/// policy's balancedness dotted.
fn chart(curves: &[Curve]) -> String {
    let (panel_w, panel_h, left, top, gap) = (420.0, 320.0, 60.0, 50.0, 70.0);
    let width = left + NODES.len() as f64 * (panel_w + gap) + 10.0;
    let workloads: Vec<&str> = {
        let mut names: Vec<&str> = Vec::new();
        for c in curves {
            if !names.contains(&c.workload.as_str()) {
                names.push(&c.workload);
            }
        }
        names
    };
    let legend_h = 22.0 * (workloads.len() as f64 + 1.0);
    let height = top + panel_h + 50.0 + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">eplb locality budget: balancedness against off-home share (288 slots, 8 groups, 32 GPUs)</text>"#,
        width / 2.0
    );
    for (pi, &nodes) in NODES.iter().enumerate() {
        // Each panel scales to its own curves.
        let panel: Vec<&Curve> = curves.iter().filter(|c| c.nodes == nodes).collect();
        let x_max = panel
            .iter()
            .flat_map(|c| {
                c.points
                    .iter()
                    .map(|p| p.mean_off_home.max(p.bound_off_home))
            })
            .fold(0.05f64, f64::max);
        let x_step = if x_max > 0.2 { 0.05 } else { 0.02 };
        let x_max = (x_max / x_step).ceil() * x_step;
        let y_min = panel
            .iter()
            .flat_map(|c| {
                c.points
                    .iter()
                    .map(|p| p.balancedness.min(p.bound_balancedness))
            })
            .fold(1.0f64, f64::min);
        let y_step = if 1.0 - y_min > 0.4 { 0.1 } else { 0.05 };
        let y_min = ((y_min - 0.02) / y_step).floor() * y_step;
        let x0 = left + pi as f64 * (panel_w + gap);
        let px = |v: f64| x0 + v / x_max * panel_w;
        let py = |v: f64| top + (1.0 - (v - y_min) / (1.0 - y_min)) * panel_h;
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{top}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{nodes} nodes x {} GPUs</text>"#,
            x0 + panel_w / 2.0,
            top - 8.0,
            GPUS / nodes
        );
        // Grid and ticks.
        let mut t = 0.0;
        while t <= x_max + 1e-9 {
            let x = px(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{:.0}%</text>"##,
                top + panel_h,
                top + panel_h + 16.0,
                t * 100.0
            );
            t += x_step;
        }
        let mut v = y_min;
        while v <= 1.0 + 1e-9 {
            let y = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
                x0 + panel_w,
                x0 - 5.0,
                y + 4.0
            );
            v += y_step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">mean off-home share over layers</text>"#,
            x0 + panel_w / 2.0,
            top + panel_h + 34.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">balancedness</text>"#,
            x0 - 42.0,
            top + panel_h / 2.0,
            x0 - 42.0,
            top + panel_h / 2.0
        );
        for (wi, name) in workloads.iter().enumerate() {
            let Some(c) = curves
                .iter()
                .find(|c| c.nodes == nodes && c.workload == *name)
            else {
                continue;
            };
            let color = COLORS[wi % COLORS.len()];
            let path = |pts: Vec<(f64, f64)>| {
                pts.iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let bound: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|p| (p.bound_off_home, p.bound_balancedness))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
                path(bound)
            );
            let plan: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|p| (p.mean_off_home, p.balancedness))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path(plan.clone())
            );
            for (p, &(x, y)) in c.points.iter().zip(&plan) {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: budget {:.0}%, balancedness {:.4}, off-home {:.2}%</title></circle>"#,
                    px(x),
                    py(y),
                    c.workload,
                    p.budget * 100.0,
                    p.balancedness,
                    p.mean_off_home * 100.0
                );
            }
            let gy = py(c.global.max(y_min));
            let _ = writeln!(
                s,
                r#"<line x1="{x0}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="{color}" stroke-width="1" stroke-dasharray="1 3"/>"#,
                x0 + panel_w
            );
        }
    }
    // Legend.
    let ly = top + panel_h + 56.0;
    for (wi, name) in workloads.iter().enumerate() {
        let y = ly + 20.0 * wi as f64;
        let color = COLORS[wi % COLORS.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            left + 30.0,
            left + 38.0,
            y + 4.0
        );
    }
    let y = ly + 20.0 * workloads.len() as f64;
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{}">solid: plans at budgets 0, 1, 2, 5, 10, 20, 100% (dots) · dashed: water-filling bound · dotted: global policy</text>"##,
        y + 4.0
    );
    s.push_str("</svg>\n");
    s
}
