//! Migration-aware re-planning (`plan_experts` with an old plan): the invariants every output must
//! meet on thousands of random shapes, loads and old plans, the errors for invalid old plans, and
//! the weights moved on slowly drifting DeepSeek-V3-like loads.

use eplb::metrics::{Migration, duplicated_replicas, gpu_loads, off_home_share, weights_moved};
use eplb::plan::{Plan, plan_experts};
use eplb::{Algorithm, Effort, Error, Options, Policy, Shape, rebalance_experts};

/// SplitMix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A random valid shape, hierarchical or global, small enough for thousands of cases.
fn random_shape(rng: &mut Rng) -> Shape {
    let layers = rng.range(1, 3);
    loop {
        let (groups, nodes, logical, gpus) = if rng.below(2) == 0 {
            // Hierarchical: num_groups % num_nodes == 0.
            let nodes = rng.range(1, 4);
            let groups = nodes * rng.range(1, 3);
            let logical = groups * rng.range(1, 5);
            let gpus = nodes * rng.range(1, 4);
            (groups, nodes, logical, gpus)
        } else {
            let nodes = rng.range(2, 5);
            let groups = rng.range(1, 9);
            if groups % nodes == 0 {
                continue;
            }
            (groups, nodes, rng.range(1, 40), rng.range(1, 12))
        };
        let min_replicas = logical.div_ceil(gpus) * gpus;
        let replicas = min_replicas + gpus * rng.below(3);
        return Shape::new(layers, logical, replicas, groups, nodes, gpus).expect("valid shape");
    }
}

/// Random loads of one of several families (ties and zeros on purpose).
fn random_loads(rng: &mut Rng, shape: &Shape) -> Vec<f32> {
    let n = shape.num_layers * shape.num_logical;
    let family = rng.below(6);
    (0..n)
        .map(|_| match family {
            0 => rng.range(0, 1000) as f32,
            1 => ((1.0 * rng.normal()).exp() * 500.0).round() as f32,
            2 => {
                if rng.below(2) == 0 {
                    0.0
                } else {
                    rng.range(1, 100) as f32
                }
            }
            3 => rng.range(0, 3) as f32 * 10.0, // many exact ties
            4 => 0.0,
            _ => (rng.uniform() * 1e4) as f32,
        })
        .collect()
}

/// Loads multiplied by `exp(sigma * N(0, 1))` per expert.
fn drift(rng: &mut Rng, loads: &[f32], sigma: f64) -> Vec<f32> {
    loads
        .iter()
        .map(|&v| (f64::from(v) * (sigma * rng.normal()).exp()).round() as f32)
        .collect()
}

/// A random valid plan: every expert once, the rest random, shuffled.
fn random_plan(rng: &mut Rng, shape: &Shape) -> Vec<i64> {
    let (e, r) = (shape.num_logical, shape.num_replicas);
    let mut out = Vec::with_capacity(shape.num_layers * r);
    for _ in 0..shape.num_layers {
        let mut row: Vec<i64> = (0..e as i64).collect();
        row.extend((e..r).map(|_| rng.below(e) as i64));
        for i in (1..r).rev() {
            row.swap(i, rng.below(i + 1));
        }
        out.extend(row);
    }
    out
}

fn row_f64(loads: &[f32], shape: &Shape, layer: usize) -> Vec<f64> {
    let e = shape.num_logical;
    loads[layer * e..(layer + 1) * e]
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

fn layer_gpu_loads(loads: &[f32], shape: &Shape, plan: &Plan, layer: usize) -> Vec<f64> {
    let (e, r) = (shape.num_logical, shape.num_replicas);
    let mut out = Vec::new();
    gpu_loads(
        &row_f64(loads, shape, layer),
        &plan.phy2log[layer * r..(layer + 1) * r],
        &plan.logcnt[layer * e..(layer + 1) * e],
        shape.slots_per_gpu(),
        &mut out,
    );
    out
}

fn max_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Every invariant of a re-planned output against the from-scratch plan and the old plan.
fn check_replan(
    loads: &[f32],
    shape: &Shape,
    options: &Options,
    old: &[i64],
    plan: &Plan,
    migration: &Migration,
    context: &str,
) {
    let (l, e, r, g) = (
        shape.num_layers,
        shape.num_logical,
        shape.num_replicas,
        shape.num_groups,
    );
    let k = shape.slots_per_gpu();
    let fresh = rebalance_experts(loads, shape, options).expect("fresh plan");
    assert_eq!(plan.shape, *shape, "{context}");
    assert_eq!(plan.phy2log.len(), l * r, "{context}");
    assert_eq!(plan.logcnt.len(), l * e, "{context}");
    assert_eq!(plan.group_node.len(), l * g, "{context}");
    let mut expected = Migration::default();
    for layer in 0..l {
        let row = &plan.phy2log[layer * r..(layer + 1) * r];
        let cnt = &plan.logcnt[layer * e..(layer + 1) * e];
        let old_row = &old[layer * r..(layer + 1) * r];
        let ctx = format!("{context}, layer {layer}");
        // A valid plan.
        let mut counts = vec![0i64; e];
        for &x in row {
            assert!((0..e as i64).contains(&x), "{ctx}: expert id {x}");
            counts[x as usize] += 1;
        }
        assert_eq!(counts, cnt, "{ctx}: logcnt does not match phy2log");
        assert!(
            counts.iter().all(|&c| c >= 1),
            "{ctx}: an expert without a slot"
        );
        assert_eq!(counts.iter().sum::<i64>(), r as i64, "{ctx}");
        // Balance: never above the from-scratch plan's by more than the tolerance.
        let ours = max_of(&layer_gpu_loads(loads, shape, plan, layer));
        let fresh_loads = layer_gpu_loads(loads, shape, &fresh, layer);
        let theirs = max_of(&fresh_loads);
        let bound = theirs * (1.0 + options.max_balance_loss) * (1.0 + 1e-12);
        assert!(
            ours <= bound,
            "{ctx}: max GPU load {ours} above {theirs} (+{})",
            options.max_balance_loss
        );
        // No avoidable duplicate.
        let fresh_row = &fresh.phy2log[layer * r..(layer + 1) * r];
        if duplicated_replicas(fresh_row, k) == 0 {
            assert_eq!(
                duplicated_replicas(row, k),
                0,
                "{ctx}: a GPU holds one expert twice"
            );
        }
        // DeepSeek: relabelling only, so the same GPU loads.
        if options.algorithm == Algorithm::DeepSeek {
            let mut a = layer_gpu_loads(loads, shape, plan, layer);
            let mut b = fresh_loads.clone();
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{ctx}: GPU loads changed"
                );
            }
        }
        // Locality: strictly hierarchical (group_node consistent), or within the budget.
        let homes = &plan.group_node[layer * g..(layer + 1) * g];
        if shape.policy() == Policy::Hierarchical {
            assert!(
                homes
                    .iter()
                    .all(|&h| (0..shape.num_nodes as i64).contains(&h)),
                "{ctx}: {homes:?}"
            );
            let row64 = row_f64(loads, shape, layer);
            if options.max_off_home_share == 0.0 {
                let (group_size, spn) = (e / g, r / shape.num_nodes);
                for (s, &x) in row.iter().enumerate() {
                    assert_eq!(
                        homes[x as usize / group_size],
                        (s / spn) as i64,
                        "{ctx}: slot {s} (expert {x}) is off its group's home node"
                    );
                }
            } else {
                let share = off_home_share(&row64, row, cnt, homes, shape);
                assert!(
                    share <= options.max_off_home_share + 1e-9,
                    "{ctx}: off-home share {share}"
                );
            }
        } else {
            assert!(homes.iter().all(|&h| h == -1), "{ctx}: {homes:?}");
        }
        expected.add_layer(row, old_row, k);
    }
    assert_eq!(*migration, expected, "{context}: migration statistics");
}

fn random_options(rng: &mut Rng, shape: &Shape) -> Options {
    let algorithm = if rng.below(5) == 0 {
        Algorithm::DeepSeek
    } else {
        Algorithm::Refined
    };
    let effort = [Effort::Fast, Effort::Default, Effort::High, Effort::Max][rng.below(4)];
    let max_balance_loss = [0.0, 0.0, 0.001, 0.01, 0.1, 1.0][rng.below(6)];
    let max_off_home_share = if algorithm == Algorithm::Refined
        && shape.policy() == Policy::Hierarchical
        && rng.below(4) == 0
    {
        [0.05, 0.2, 1.0][rng.below(3)]
    } else {
        0.0
    };
    Options {
        algorithm,
        effort,
        max_balance_loss,
        max_off_home_share,
    }
}

/// One random case: a random shape, options, loads and old plan.
fn run_case(seed: u64) {
    let mut rng = Rng(seed);
    let shape = random_shape(&mut rng);
    let options = random_options(&mut rng, &shape);
    let loads = random_loads(&mut rng, &shape);
    let kind = rng.below(4);
    let old = match kind {
        // The plan of slowly drifted loads (the common case).
        0 => {
            let before = drift(&mut rng, &loads, 0.05);
            let o = Options {
                max_balance_loss: 0.0,
                ..options
            };
            rebalance_experts(&before, &shape, &o)
                .expect("old plan")
                .phy2log
        }
        // The plan of unrelated loads.
        1 => {
            let other = random_loads(&mut rng, &shape);
            rebalance_experts(&other, &shape, &Options::default())
                .expect("old plan")
                .phy2log
        }
        // Any valid plan (duplicates, experts on foreign nodes).
        _ => random_plan(&mut rng, &shape),
    };
    let context = format!("seed {seed}: {shape:?}, {options:?}, old kind {kind}");
    let (plan, migration) = plan_experts(&loads, &shape, &options, Some(&old)).expect(&context);
    let migration = migration.expect("migration statistics with an old plan");
    check_replan(&loads, &shape, &options, &old, &plan, &migration, &context);
    // Deterministic.
    let (again, _) = plan_experts(&loads, &shape, &options, Some(&old)).expect(&context);
    assert_eq!(plan, again, "{context}: not deterministic");
    // Re-planning again from the result with the same loads is a fixed point at no cost.
    let (next, m2) = plan_experts(&loads, &shape, &options, Some(&plan.phy2log)).expect(&context);
    let m2 = m2.expect("statistics");
    check_replan(
        &loads,
        &shape,
        &options,
        &plan.phy2log,
        &next,
        &m2,
        &context,
    );
    // (With two replicas of an expert on one GPU, equal-load exchanges are only greedy.)
    let fresh = rebalance_experts(&loads, &shape, &options).expect("fresh plan");
    if duplicated_replicas(&fresh.phy2log, shape.slots_per_gpu()) == 0 {
        assert_eq!(
            m2.weights_moved, 0,
            "{context}: re-planning its own output moved weights"
        );
    }
}

#[test]
fn random_replans_keep_every_invariant() {
    for seed in 0..3000u64 {
        run_case(seed);
    }
}

#[test]
fn integer_loads_replan_like_float_loads() {
    let mut rng = Rng(99);
    for _ in 0..200 {
        let shape = random_shape(&mut rng);
        let loads: Vec<i64> = (0..shape.num_layers * shape.num_logical)
            .map(|_| rng.range(0, 5000) as i64)
            .collect();
        let floats: Vec<f32> = loads.iter().map(|&v| v as f32).collect();
        let old = random_plan(&mut rng, &shape);
        let options = Options::default();
        let (a, ma) = plan_experts(&loads, &shape, &options, Some(&old)).expect("i64 replan");
        let (b, mb) = plan_experts(&floats, &shape, &options, Some(&old)).expect("f32 replan");
        assert_eq!(a, b);
        assert_eq!(ma, mb);
    }
}

#[test]
fn without_an_old_plan_nothing_changes() {
    let mut rng = Rng(5);
    for _ in 0..100 {
        let shape = random_shape(&mut rng);
        let options = random_options(&mut rng, &shape);
        let loads = random_loads(&mut rng, &shape);
        let (plan, migration) = plan_experts(&loads, &shape, &options, None).expect("plan");
        assert!(migration.is_none());
        assert_eq!(
            plan,
            rebalance_experts(&loads, &shape, &options).expect("plan")
        );
    }
}

#[test]
fn replanning_the_same_loads_keeps_the_fresh_plan() {
    let mut rng = Rng(11);
    for _ in 0..300 {
        let shape = random_shape(&mut rng);
        let options = random_options(&mut rng, &shape);
        let loads = random_loads(&mut rng, &shape);
        let fresh = rebalance_experts(&loads, &shape, &options).expect("plan");
        let (plan, m) =
            plan_experts(&loads, &shape, &options, Some(&fresh.phy2log)).expect("replan");
        let m = m.expect("statistics");
        assert_eq!(m.weights_moved, 0, "{shape:?} {options:?}");
        // With two replicas of an expert on one GPU, another plan may move nothing either.
        if duplicated_replicas(&fresh.phy2log, shape.slots_per_gpu()) == 0 {
            assert_eq!(m.slots_changed, 0, "{shape:?} {options:?}");
            assert_eq!(m.layers_unchanged, shape.num_layers);
            assert_eq!(plan.phy2log, fresh.phy2log);
        }
    }
}

#[test]
fn a_permuted_old_plan_is_matched_back_exactly() {
    // The old plan is the fresh plan with nodes, GPUs and slots renumbered: zero-loss relabelling
    // alone must find a plan that moves nothing.
    let mut rng = Rng(21);
    let mut checked = 0;
    while checked < 200 {
        let shape = random_shape(&mut rng);
        let options = Options {
            algorithm: if rng.below(2) == 0 {
                Algorithm::DeepSeek
            } else {
                Algorithm::Refined
            },
            ..Options::default()
        };
        let loads = random_loads(&mut rng, &shape);
        let fresh = rebalance_experts(&loads, &shape, &options).expect("plan");
        let (r, p, k) = (shape.num_replicas, shape.num_gpus, shape.slots_per_gpu());
        let (_, n) = if shape.policy() == Policy::Hierarchical {
            (shape.num_groups, shape.num_nodes)
        } else {
            (1, 1)
        };
        let gpn = p / n;
        let node_perm = permutation(&mut rng, n);
        let mut old = vec![0i64; fresh.phy2log.len()];
        for layer in 0..shape.num_layers {
            let gpu_perms: Vec<Vec<usize>> = (0..n).map(|_| permutation(&mut rng, gpn)).collect();
            for gpu in 0..p {
                let (node, local) = (gpu / gpn, gpu % gpn);
                let dst = node_perm[node] * gpn + gpu_perms[node][local];
                let slot_perm = permutation(&mut rng, k);
                for s in 0..k {
                    old[layer * r + dst * k + slot_perm[s]] =
                        fresh.phy2log[layer * r + gpu * k + s];
                }
            }
        }
        let (plan, m) = plan_experts(&loads, &shape, &options, Some(&old)).expect("replan");
        let m = m.expect("statistics");
        assert_eq!(m.weights_moved, 0, "{shape:?} {options:?}");
        check_replan(&loads, &shape, &options, &old, &plan, &m, "permuted");
        checked += 1;
    }
}

fn permutation(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

#[test]
fn invalid_old_plans_are_rejected() {
    let shape = Shape::new(2, 8, 12, 4, 2, 4).expect("shape");
    let loads: Vec<f32> = (0..16).map(|i| (i * 37 % 11) as f32 + 1.0).collect();
    let options = Options::default();
    let good = rebalance_experts(&loads, &shape, &options)
        .expect("plan")
        .phy2log;
    let expect_invalid =
        |old: &[i64], what: &str| match plan_experts(&loads, &shape, &options, Some(old)) {
            Err(Error::InvalidPlan { arg, reason }) => {
                assert_eq!(arg, "old_phy2log", "{what}");
                assert!(!reason.is_empty(), "{what}");
            }
            other => panic!("{what}: expected InvalidPlan, got {other:?}"),
        };
    let mut bad = good.clone();
    bad[5] = 8;
    expect_invalid(&bad, "id == num_logical");
    bad[5] = -1;
    expect_invalid(&bad, "negative id");
    bad[5] = i64::MAX;
    expect_invalid(&bad, "huge id");
    // Expert 3 of layer 1 replaced everywhere by expert 4: missing.
    let mut missing = good.clone();
    for x in &mut missing[12..] {
        if *x == 3 {
            *x = 4;
        }
    }
    expect_invalid(&missing, "missing expert");
    expect_invalid(&good[..23], "too short");
    let mut long = good.clone();
    long.push(0);
    expect_invalid(&long, "too long");
    // The error names the layer and slot.
    let mut bad = good.clone();
    bad[13] = 99;
    match plan_experts(&loads, &shape, &options, Some(&bad)) {
        Err(Error::InvalidPlan { reason, .. }) => {
            assert!(reason.contains("[1][1]"), "{reason}");
            assert!(reason.contains("99"), "{reason}");
        }
        other => panic!("expected InvalidPlan, got {other:?}"),
    }
}

/// DeepSeek-V3-like loads (log-normal group popularity, log-normal experts, a few hot experts), as
/// token counts of a 1M-token window.
fn deepseek_like(rng: &mut Rng, layers: usize, experts: usize, groups: usize) -> Vec<f32> {
    let group_size = experts / groups;
    let mut out = Vec::with_capacity(layers * experts);
    for _ in 0..layers {
        let pop: Vec<f64> = (0..groups).map(|_| (0.45 * rng.normal()).exp()).collect();
        let mut row: Vec<f64> = (0..experts)
            .map(|e| pop[e / group_size] * (0.6 * rng.normal()).exp())
            .collect();
        for _ in 0..3 {
            let e = rng.below(experts);
            row[e] *= 2.0 + 3.0 * rng.uniform();
        }
        let mean = row.iter().sum::<f64>() / experts as f64;
        out.extend(row.iter().map(|&v| ((v / mean) * 4096.0).round() as f32));
    }
    out
}

/// Sum of weights moved by re-planning each window from the previous plan, and by planning each
/// from scratch; and the balancedness sums (`sum mean`, `sum max`) of both.
fn drift_run(shape: &Shape, tolerance: f64, windows: usize, seed: u64) -> (usize, usize, f64, f64) {
    let mut rng = Rng(seed);
    let mut loads = deepseek_like(
        &mut rng,
        shape.num_layers,
        shape.num_logical,
        shape.num_groups,
    );
    let options = Options {
        max_balance_loss: tolerance,
        ..Options::default()
    };
    let mut ours = rebalance_experts(&loads, shape, &options).expect("plan");
    let mut scratch = ours.clone();
    let (mut moved, mut moved_scratch) = (0, 0);
    let (mut bal_ours, mut bal_scratch) = ((0.0, 0.0), (0.0, 0.0));
    let (r, k) = (shape.num_replicas, shape.slots_per_gpu());
    for _ in 1..windows {
        loads = drift(&mut rng, &loads, 0.02);
        let (next, m) = plan_experts(&loads, shape, &options, Some(&ours.phy2log)).expect("replan");
        let m = m.expect("statistics");
        check_replan(&loads, shape, &options, &ours.phy2log, &next, &m, "drift");
        moved += m.weights_moved;
        let fresh = rebalance_experts(&loads, shape, &options).expect("plan");
        for layer in 0..shape.num_layers {
            let rows = layer * r..(layer + 1) * r;
            moved_scratch +=
                weights_moved(&fresh.phy2log[rows.clone()], &scratch.phy2log[rows], k).0;
            for (plan, acc) in [(&next, &mut bal_ours), (&fresh, &mut bal_scratch)] {
                let g = layer_gpu_loads(&loads, shape, plan, layer);
                acc.0 += g.iter().sum::<f64>() / g.len() as f64;
                acc.1 += max_of(&g);
            }
        }
        ours = next;
        scratch = fresh;
    }
    (
        moved,
        moved_scratch,
        bal_ours.0 / bal_ours.1,
        bal_scratch.0 / bal_scratch.1,
    )
}

#[test]
fn slow_drift_moves_far_fewer_weights_than_planning_from_scratch() {
    let prefill = Shape::new(6, 256, 288, 8, 4, 32).expect("prefill shape");
    let decode = Shape::new(4, 256, 288, 8, 18, 144).expect("decode shape");
    for (name, shape) in [("prefill", prefill), ("decode", decode)] {
        let (moved, scratch, bal, bal_scratch) = drift_run(&shape, 0.0, 5, 1);
        let ratio = moved as f64 / scratch as f64;
        assert!(
            ratio < 0.5,
            "{name}, tolerance 0: moved {moved} vs {scratch} from scratch"
        );
        assert!(
            bal >= bal_scratch * (1.0 - 1e-12),
            "{name}: balancedness {bal} < {bal_scratch}"
        );
        let (moved, scratch, bal, bal_scratch) = drift_run(&shape, 0.01, 5, 2);
        let ratio = moved as f64 / scratch as f64;
        assert!(
            ratio < 0.1,
            "{name}, tolerance 1%: moved {moved} vs {scratch} from scratch"
        );
        assert!(
            bal >= bal_scratch / 1.01 * (1.0 - 1e-12),
            "{name}: balancedness {bal} vs {bal_scratch}"
        );
    }
}
