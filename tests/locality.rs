//! The locality budget (`Options::max_off_home_share`, issue 6) over thousands of random
//! hierarchical shapes and loads: valid plans; no layer above its budget; no layer worse than the
//! strict hierarchical plan; every expert keeps a replica on its home node; the group homes are the
//! strict plan's; no more duplicated replicas than the strict plan; budget 0 is the strict plan;
//! deterministic; ignored by the global policy. Also the water-filling bound and its use.

use eplb::metrics::{duplicated_replicas, max_gpu_load, off_home_share};
use eplb::plan::locality::{share_for_node_balance, water_filling_bound, water_level};
use eplb::{Algorithm, Options, Plan, Policy, Shape, rebalance_experts};

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
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A random valid hierarchical shape with at least two nodes.
fn random_hierarchical_shape(rng: &mut Rng) -> Shape {
    loop {
        let nodes = rng.pick(&[2, 2, 2, 3, 4, 4, 8]);
        let gpus_per_node = rng.pick(&[1, 2, 2, 3, 4, 8]);
        let gpus = nodes * gpus_per_node;
        let slots_per_gpu = 1 + rng.below(6);
        let replicas = gpus * slots_per_gpu;
        let groups = nodes * rng.pick(&[1, 1, 2, 3, 4]);
        let candidates: Vec<usize> = (1..=replicas / groups).map(|m| m * groups).collect();
        if candidates.is_empty() {
            continue;
        }
        let logical = rng.pick(&candidates);
        let layers = 1 + rng.below(3);
        if let Ok(shape) = Shape::new(layers, logical, replicas, groups, nodes, gpus) {
            assert_eq!(shape.policy(), Policy::Hierarchical);
            return shape;
        }
    }
}

/// Loads from several families: skewed, with hot groups, sparse, tied, all zero.
fn random_loads(rng: &mut Rng, shape: &Shape) -> Vec<f32> {
    let (e, g) = (shape.num_logical, shape.num_groups);
    let family = rng.below(8);
    let mut out = Vec::with_capacity(shape.num_layers * e);
    for _ in 0..shape.num_layers {
        let group_pop: Vec<f64> = (0..g).map(|_| (0.6 * rng.normal()).exp()).collect();
        for x in 0..e {
            let v = match family {
                0 => 1.0 + rng.below(1000) as f64,
                1 => group_pop[x * g / e] * (0.8 * rng.normal()).exp() * 1000.0,
                2 => 1000.0 / ((rng.below(e) + 1) as f64).powf(1.2),
                3 => {
                    if rng.unit() < 0.5 {
                        0.0
                    } else {
                        (rng.normal()).exp() * 100.0
                    }
                }
                4 => 7.0,
                5 => {
                    if x == rng.below(e) {
                        1e6
                    } else {
                        1.0
                    }
                }
                6 => 0.0,
                _ => group_pop[x * g / e].powi(3) * (1.0 + rng.below(50) as f64),
            };
            out.push(v as f32);
        }
    }
    out
}

fn options(budget: f64) -> Options {
    Options {
        max_off_home_share: budget,
        ..Options::default()
    }
}

fn row_f64(loads: &[f32], layer: usize, e: usize) -> Vec<f64> {
    loads[layer * e..(layer + 1) * e]
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

/// Checks every guarantee of a budgeted plan against the strict plan of the same loads.
fn check_budgeted(
    loads: &[f32],
    shape: &Shape,
    budget: f64,
    plan: &Plan,
    strict: &Plan,
    case: &str,
) {
    let (e, r, g) = (shape.num_logical, shape.num_replicas, shape.num_groups);
    let k = shape.slots_per_gpu();
    let slots_per_node = r / shape.num_nodes;
    let group_size = e / g;
    assert_eq!(
        plan.group_node, strict.group_node,
        "{case}: group homes changed"
    );
    let mut scratch = Vec::new();
    for layer in 0..shape.num_layers {
        let row = row_f64(loads, layer, e);
        let phy = &plan.phy2log[layer * r..(layer + 1) * r];
        let cnt = &plan.logcnt[layer * e..(layer + 1) * e];
        let homes = &plan.group_node[layer * g..(layer + 1) * g];
        // A valid plan row of the exact shape.
        let mut seen = vec![0i64; e];
        let mut at_home = vec![0usize; e];
        for (slot, &x) in phy.iter().enumerate() {
            assert!(
                x >= 0 && (x as usize) < e,
                "{case}: layer {layer} slot {slot} holds {x}"
            );
            seen[x as usize] += 1;
            if homes[x as usize / group_size] as usize == slot / slots_per_node {
                at_home[x as usize] += 1;
            }
        }
        assert_eq!(
            seen, cnt,
            "{case}: layer {layer}: logcnt does not match phy2log"
        );
        if let Some(x) = at_home.iter().position(|&c| c == 0) {
            panic!("{case}: layer {layer}: expert {x} has no replica on its home node");
        }
        // Within the budget.
        let share = off_home_share(&row, phy, cnt, homes, shape);
        assert!(
            share <= budget,
            "{case}: layer {layer}: off-home share {share} above the budget {budget}"
        );
        // Never worse than the strict plan, never more duplicates.
        let strict_phy = &strict.phy2log[layer * r..(layer + 1) * r];
        let strict_cnt = &strict.logcnt[layer * e..(layer + 1) * e];
        let ours = max_gpu_load(&row, phy, cnt, k, &mut scratch);
        let theirs = max_gpu_load(&row, strict_phy, strict_cnt, k, &mut scratch);
        assert!(
            ours <= theirs * (1.0 + 1e-12),
            "{case}: layer {layer}: max GPU load {ours} above the strict plan's {theirs}"
        );
        assert!(
            duplicated_replicas(phy, k) <= duplicated_replicas(strict_phy, k),
            "{case}: layer {layer}: more duplicated replicas than the strict plan"
        );
        // No cheating on the budget: with these homes, at most `budget * total` leaves the home
        // nodes, so the heaviest node is at least the water level of the home loads.
        let total: f64 = row.iter().sum();
        let mut home_loads = vec![0.0; shape.num_nodes];
        for (x, &w) in row.iter().enumerate() {
            home_loads[homes[x / group_size] as usize] += w;
        }
        let floor = water_level(&home_loads, budget * total) / shape.gpus_per_node() as f64;
        assert!(
            ours >= floor * (1.0 - 1e-9),
            "{case}: layer {layer}: max GPU load {ours} below the water level {floor}"
        );
    }
}

#[test]
fn random_hierarchical_plans_keep_every_guarantee() {
    let mut rng = Rng(0x10CA_1177);
    let mut improved_layers = 0;
    let mut layers = 0;
    for case in 0..2500 {
        let shape = random_hierarchical_shape(&mut rng);
        let loads = random_loads(&mut rng, &shape);
        let any = rng.unit();
        let budget = rng.pick(&[0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, any]);
        let strict = rebalance_experts(&loads, &shape, &options(0.0)).expect("strict plan");
        let plan = rebalance_experts(&loads, &shape, &options(budget)).expect("budgeted plan");
        let name = format!("case {case} ({shape:?}, budget {budget})");
        check_budgeted(&loads, &shape, budget, &plan, &strict, &name);
        if budget == 0.0 {
            assert_eq!(plan, strict, "{name}: budget 0 is not the strict plan");
        }
        let k = shape.slots_per_gpu();
        let (e, r) = (shape.num_logical, shape.num_replicas);
        let mut scratch = Vec::new();
        for layer in 0..shape.num_layers {
            let row = row_f64(&loads, layer, e);
            let ours = max_gpu_load(
                &row,
                &plan.phy2log[layer * r..(layer + 1) * r],
                &plan.logcnt[layer * e..(layer + 1) * e],
                k,
                &mut scratch,
            );
            let theirs = max_gpu_load(
                &row,
                &strict.phy2log[layer * r..(layer + 1) * r],
                &strict.logcnt[layer * e..(layer + 1) * e],
                k,
                &mut scratch,
            );
            layers += 1;
            improved_layers += usize::from(ours < theirs);
        }
    }
    // The budget is not idle: a good share of random layers get better.
    assert!(
        improved_layers * 5 >= layers,
        "only {improved_layers} of {layers} layers improved"
    );
}

#[test]
fn deepseek_sized_plans_keep_every_guarantee() {
    let mut rng = Rng(0xDEE9_5EEC);
    for case in 0..12 {
        let nodes = rng.pick(&[2, 4, 8]);
        let shape = Shape::new(4, 256, 288, 8, nodes, 32).expect("shape");
        let loads = random_loads(&mut rng, &shape);
        let strict = rebalance_experts(&loads, &shape, &options(0.0)).expect("strict plan");
        for budget in [0.01, 0.05, 0.2, 1.0] {
            let plan = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
            let name = format!("DeepSeek-sized case {case}, {nodes} nodes, budget {budget}");
            check_budgeted(&loads, &shape, budget, &plan, &strict, &name);
        }
    }
}

#[test]
fn budget_zero_is_the_default_strict_plan() {
    let mut rng = Rng(7);
    for _ in 0..200 {
        let shape = random_hierarchical_shape(&mut rng);
        let loads = random_loads(&mut rng, &shape);
        let default = rebalance_experts(&loads, &shape, &Options::default()).expect("plan");
        let zero = rebalance_experts(&loads, &shape, &options(0.0)).expect("plan");
        assert_eq!(default, zero);
    }
}

#[test]
fn budgeted_plans_are_deterministic() {
    let mut rng = Rng(99);
    for _ in 0..200 {
        let shape = random_hierarchical_shape(&mut rng);
        let loads = random_loads(&mut rng, &shape);
        let budget = rng.pick(&[0.02, 0.2, 1.0]);
        let a = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
        let b = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
        assert_eq!(a, b);
        let ints: Vec<i64> = loads.iter().map(|&v| v as i64).collect();
        let c = rebalance_experts(&ints, &shape, &options(budget)).expect("plan");
        let d = rebalance_experts(&ints, &shape, &options(budget)).expect("plan");
        assert_eq!(c, d);
    }
}

#[test]
fn negative_zero_loads_plan_like_zero_loads() {
    // `-0.0` is a valid load (it is not below zero) and must weigh exactly like `0.0`.
    let mut rng = Rng(0x2E20);
    for _ in 0..200 {
        let shape = random_hierarchical_shape(&mut rng);
        let mut loads = random_loads(&mut rng, &shape);
        for v in loads.iter_mut() {
            if rng.below(4) == 0 {
                *v = 0.0;
            }
        }
        let negative: Vec<f32> = loads
            .iter()
            .map(|&v| if v == 0.0 { -0.0 } else { v })
            .collect();
        let budget = rng.pick(&[0.05, 0.2, 1.0]);
        let plus = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
        let minus = rebalance_experts(&negative, &shape, &options(budget)).expect("plan");
        assert_eq!(plus, minus, "{shape:?}, budget {budget}");
    }
}

#[test]
fn the_global_policy_ignores_the_budget() {
    let mut rng = Rng(3);
    let mut checked = 0;
    while checked < 300 {
        let nodes = rng.pick(&[3, 5, 16]);
        let groups = rng.pick(&[1, 2, 4, 8]);
        let gpus = rng.pick(&[2, 4, 8, 16, 32]);
        let replicas = gpus * (1 + rng.below(4));
        let logical = 1 + rng.below(replicas);
        let Ok(shape) = Shape::new(2, logical, replicas, groups, nodes, gpus) else {
            continue;
        };
        if shape.policy() != Policy::Global {
            continue;
        }
        let loads = random_loads(&mut rng, &shape);
        let plain = rebalance_experts(&loads, &shape, &Options::default()).expect("plan");
        let budgeted = rebalance_experts(&loads, &shape, &options(0.3)).expect("plan");
        assert_eq!(plain, budgeted);
        checked += 1;
    }
}

#[test]
fn the_deepseek_algorithm_refuses_a_budget() {
    let shape = Shape::new(1, 16, 24, 4, 2, 4).expect("shape");
    let loads = vec![1.0f32; 16];
    let opts = Options {
        algorithm: Algorithm::DeepSeek,
        max_off_home_share: 0.1,
        ..Options::default()
    };
    assert!(rebalance_experts(&loads, &shape, &opts).is_err());
}

#[test]
fn a_hot_node_sheds_load_within_the_budget() {
    // 2 nodes x 2 GPUs x 3 slots, 2 groups of 4 experts: group 0 carries 3/4 of the load.
    let shape = Shape::new(1, 8, 12, 2, 2, 4).expect("shape");
    let loads = [30.0f32, 30.0, 30.0, 30.0, 10.0, 10.0, 10.0, 10.0];
    let strict = rebalance_experts(&loads, &shape, &options(0.0)).expect("plan");
    let row: Vec<f64> = loads.iter().map(|&v| f64::from(v)).collect();
    let mut scratch = Vec::new();
    let strict_max = max_gpu_load(&row, &strict.phy2log, &strict.logcnt, 3, &mut scratch);
    assert_eq!(strict_max, 60.0);
    let mut last = strict_max;
    for budget in [0.05, 0.1, 0.2, 0.3, 1.0] {
        let plan = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
        check_budgeted(
            &loads,
            &shape,
            budget,
            &plan,
            &strict,
            &format!("budget {budget}"),
        );
        let max = max_gpu_load(&row, &plan.phy2log, &plan.logcnt, 3, &mut scratch);
        assert!(max <= last, "budget {budget}: {max} above {last}");
        last = max;
    }
    assert!(last < strict_max, "no budget helped: {last}");
}

#[test]
fn water_level_properties() {
    assert_eq!(water_level(&[], 1.0), 0.0);
    assert_eq!(water_level(&[3.0, 1.0, 2.0], 0.0), 3.0);
    assert_eq!(water_level(&[3.0, 1.0, 2.0], 0.5), 2.5);
    assert_eq!(water_level(&[3.0, 1.0, 2.0], 2.0), 2.0);
    assert_eq!(water_level(&[3.0, 1.0, 2.0], 100.0), 2.0);
    assert_eq!(share_for_node_balance(&[3.0, 1.0, 2.0]), 1.0 / 6.0);
    let mut rng = Rng(5);
    for _ in 0..1000 {
        let n = 1 + rng.below(9);
        let nodes: Vec<f64> = (0..n).map(|_| rng.unit() * 10.0).collect();
        let total: f64 = nodes.iter().sum();
        let mut last = f64::INFINITY;
        for step in 0..=20 {
            let shed = total * step as f64 / 20.0;
            let level = water_level(&nodes, shed);
            let above: f64 = nodes.iter().map(|&v| (v - level).max(0.0)).sum();
            assert!(
                above <= shed + 1e-9 * total,
                "{nodes:?} {shed}: {above} above {level}"
            );
            assert!(level >= total / n as f64 - 1e-12 && level <= last + 1e-12);
            last = level;
        }
        assert!(
            (water_level(&nodes, share_for_node_balance(&nodes) * total) - total / n as f64).abs()
                < 1e-9 * total.max(1.0)
        );
    }
}

#[test]
fn the_bound_is_monotone_and_at_most_the_strict_plan() {
    let mut rng = Rng(11);
    for _ in 0..300 {
        let shape = random_hierarchical_shape(&mut rng);
        let loads = random_loads(&mut rng, &shape);
        let strict = rebalance_experts(&loads, &shape, &options(0.0)).expect("plan");
        let (e, r, k) = (shape.num_logical, shape.num_replicas, shape.slots_per_gpu());
        let mut scratch = Vec::new();
        for layer in 0..shape.num_layers {
            let row = row_f64(&loads, layer, e);
            let mut last = f64::INFINITY;
            for budget in [0.0, 0.01, 0.1, 0.5, 1.0] {
                let bound = water_filling_bound(&row, &shape, budget);
                assert!(bound <= last * (1.0 + 1e-12));
                last = bound;
            }
            let strict_max = max_gpu_load(
                &row,
                &strict.phy2log[layer * r..(layer + 1) * r],
                &strict.logcnt[layer * e..(layer + 1) * e],
                k,
                &mut scratch,
            );
            let bound = water_filling_bound(&row, &shape, 0.0);
            assert!(
                bound <= strict_max * (1.0 + 1e-9),
                "{bound} above {strict_max}"
            );
        }
    }
}

/// Skewed DeepSeek-V3-like loads: log-normal group popularity, log-normal experts, a few hot ones.
fn deepseek_like(rng: &mut Rng, layers: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(layers * 256);
    for _ in 0..layers {
        let groups: Vec<f64> = (0..8).map(|_| (0.45 * rng.normal()).exp()).collect();
        let mut row: Vec<f64> = (0..256)
            .map(|x| groups[x / 32] * (0.6 * rng.normal()).exp())
            .collect();
        for _ in 0..3 {
            let x = rng.below(256);
            row[x] *= 2.0 + 3.0 * rng.unit();
        }
        out.extend(row.iter().map(|&v| (v * 4096.0).round() as f32));
    }
    out
}

#[test]
fn deepseek_prefill_shape_gets_close_to_the_bound() {
    let mut rng = Rng(2024);
    let layers = 16;
    let loads = deepseek_like(&mut rng, layers);
    let shape = Shape::new(layers, 256, 288, 8, 4, 32).expect("shape");
    let mut previous = 0.0;
    for budget in [0.0, 0.02, 0.05, 0.1, 0.2] {
        let plan = rebalance_experts(&loads, &shape, &options(budget)).expect("plan");
        let (mut sum_mean, mut sum_max, mut sum_bound) = (0.0, 0.0, 0.0);
        let mut scratch = Vec::new();
        for layer in 0..layers {
            let row = row_f64(&loads, layer, 256);
            sum_mean += row.iter().sum::<f64>() / 32.0;
            sum_max += max_gpu_load(
                &row,
                &plan.phy2log[layer * 288..(layer + 1) * 288],
                &plan.logcnt[layer * 256..(layer + 1) * 256],
                9,
                &mut scratch,
            );
            sum_bound += water_filling_bound(&row, &shape, budget);
        }
        let (balancedness, bound) = (sum_mean / sum_max, sum_mean / sum_bound);
        assert!(
            balancedness >= previous,
            "budget {budget}: {balancedness} below {previous}"
        );
        assert!(
            balancedness >= bound * 0.98,
            "budget {budget}: balancedness {balancedness} more than 2% below the bound {bound}"
        );
        previous = balancedness;
    }
    assert!(previous >= 0.97, "20% budget: balancedness {previous}");
}

#[test]
fn the_c_api_plans_within_the_budget_and_reports_homes() {
    use eplb::ffi::{
        EPLB_STATUS_OK, eplb_evaluate_plan, eplb_options, eplb_options_init, eplb_plan_experts,
        eplb_plan_stats,
    };
    let mut rng = Rng(77);
    let (layers, e, r, g, n, p) = (6, 256, 288, 8, 4, 32);
    let loads = deepseek_like(&mut rng, layers);
    let mut opts = std::mem::MaybeUninit::<eplb_options>::uninit();
    // SAFETY: a valid, aligned eplb_options buffer; init fills every field.
    let mut opts = unsafe {
        eplb_options_init(opts.as_mut_ptr());
        opts.assume_init()
    };
    opts.max_off_home_share = 0.05;
    let mut phy2log = vec![0i64; layers * r];
    let mut logcnt = vec![0i64; layers * e];
    let mut group_node = vec![0i64; layers * g];
    // SAFETY: every buffer has the documented length for this shape; NULL optionals.
    let status = unsafe {
        eplb_plan_experts(
            loads.as_ptr(),
            layers,
            e,
            r,
            g,
            n,
            p,
            &opts,
            std::ptr::null(),
            phy2log.as_mut_ptr(),
            std::ptr::null_mut(),
            0,
            logcnt.as_mut_ptr(),
            group_node.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, EPLB_STATUS_OK);
    let shape = Shape::new(layers, e, r, g, n, p).expect("shape");
    let rust = rebalance_experts(&loads, &shape, &options(0.05)).expect("plan");
    assert_eq!(phy2log, rust.phy2log);
    assert_eq!(logcnt, rust.logcnt);
    assert_eq!(group_node, rust.group_node);
    assert!(group_node.iter().all(|&h| (0..n as i64).contains(&h)));
    let stats = std::mem::MaybeUninit::<eplb_plan_stats>::zeroed();
    // SAFETY: all-zero bytes are a valid eplb_plan_stats (integers and floats).
    let mut stats = unsafe { stats.assume_init() };
    stats.struct_size = std::mem::size_of::<eplb_plan_stats>();
    // SAFETY: as above; layer_stats and old_phy2log NULL.
    let status = unsafe {
        eplb_evaluate_plan(
            loads.as_ptr(),
            layers,
            e,
            r,
            g,
            n,
            p,
            phy2log.as_ptr(),
            logcnt.as_ptr(),
            group_node.as_ptr(),
            std::ptr::null(),
            &mut stats,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, EPLB_STATUS_OK);
    assert!(stats.max_off_home_share <= 0.05);
    assert!(stats.mean_off_home_share > 0.0, "the budget was not used");
}
