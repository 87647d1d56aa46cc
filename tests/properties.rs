//! Plan invariants and the refined planner's guarantees over thousands of random shapes and loads:
//! every plan is a valid placement; the refined plan's max GPU load is never above DeepSeek's on any
//! layer; no GPU holds two replicas of one expert whenever that can be avoided.

use eplb::metrics::{duplicated_replicas, gpu_loads};
use eplb::{Algorithm, Effort, Options, Plan, Policy, Shape, balanced_packing, rebalance_experts};

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
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A random valid shape, hierarchical or global.
fn random_shape(rng: &mut Rng) -> Shape {
    loop {
        let nodes = rng.pick(&[1, 1, 2, 2, 3, 4, 6, 8]);
        let gpus_per_node = rng.pick(&[1, 2, 3, 4, 8]);
        let gpus = nodes * gpus_per_node;
        let slots_per_gpu = 1 + rng.below(6);
        let replicas = gpus * slots_per_gpu;
        let groups = rng.pick(&[1, 2, 3, 4, 6, 8, 12, 16]);
        let hierarchical = groups % nodes == 0;
        let logical = if hierarchical {
            let candidates: Vec<usize> = (1..=replicas / groups).map(|m| m * groups).collect();
            if candidates.is_empty() {
                continue;
            }
            rng.pick(&candidates)
        } else {
            1 + rng.below(replicas)
        };
        let layers = 1 + rng.below(3);
        if let Ok(shape) = Shape::new(layers, logical, replicas, groups, nodes, gpus) {
            return shape;
        }
    }
}

fn random_loads(rng: &mut Rng, n: usize) -> Vec<f32> {
    let family = rng.below(7);
    (0..n)
        .map(|_| match family {
            0 => (rng.unit() * 1000.0) as f32,
            1 => (2.0 * (rng.unit() - 0.5) * 3.0).exp() as f32 * 100.0,
            2 => rng.pick(&[0.0, 1.0, 1.0, 2.0, 5.0]),
            3 => {
                if rng.unit() < 0.6 {
                    0.0
                } else {
                    (rng.unit() * 50.0).round() as f32
                }
            }
            4 => 0.0,
            5 => (1.0 / (1.0 + rng.below(50) as f64).powf(1.2) * 1e4) as f32,
            _ => rng.pick(&[7.0, 7.0, 7.0, 3.0]),
        })
        .collect()
}

/// Checks that `plan` is a valid placement for `shape`; returns per-layer max GPU loads.
fn check_invariants(plan: &Plan, loads: &[f32], shape: &Shape, context: &str) -> Vec<f64> {
    let (e, r) = (shape.num_logical, shape.num_replicas);
    let width = r - e + 1;
    let log2phy = plan
        .log2phy(width)
        .expect("width r - e + 1 always suffices");
    let mut maxima = Vec::new();
    for layer in 0..shape.num_layers {
        let row = &plan.phy2log[layer * r..(layer + 1) * r];
        let cnt = &plan.logcnt[layer * e..(layer + 1) * e];
        let mut counted = vec![0i64; e];
        for &x in row {
            assert!((0..e as i64).contains(&x), "{context}: expert id {x}");
            counted[x as usize] += 1;
        }
        assert_eq!(counted, cnt, "{context}: logcnt disagrees with phy2log");
        assert!(
            cnt.iter().all(|&c| c >= 1),
            "{context}: expert without replica"
        );
        assert_eq!(cnt.iter().sum::<i64>(), r as i64, "{context}: counts sum");
        for x in 0..e {
            let slots = &log2phy[(layer * e + x) * width..(layer * e + x + 1) * width];
            let c = cnt[x] as usize;
            assert!(
                slots[..c].windows(2).all(|w| w[0] < w[1]),
                "{context}: ascending"
            );
            assert!(slots[c..].iter().all(|&s| s == -1), "{context}: padding");
            assert!(
                slots[..c].iter().all(|&s| row[s as usize] == x as i64),
                "{context}: log2phy"
            );
        }
        if shape.policy() == Policy::Hierarchical {
            // Every replica stays in the node of its group (strict hierarchical plan).
            let group_size = e / shape.num_groups;
            let slots_per_node = r / shape.num_nodes;
            let homes = &plan.group_node[layer * shape.num_groups..(layer + 1) * shape.num_groups];
            for (slot, &x) in row.iter().enumerate() {
                assert_eq!(
                    homes[x as usize / group_size],
                    (slot / slots_per_node) as i64,
                    "{context}: replica outside its group's node"
                );
            }
        }
        let f: Vec<f64> = loads[layer * e..(layer + 1) * e]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mut gpus = Vec::new();
        gpu_loads(&f, row, cnt, shape.slots_per_gpu(), &mut gpus);
        maxima.push(gpus.iter().copied().fold(0.0, f64::max));
    }
    maxima
}

fn options(algorithm: Algorithm, effort: Effort) -> Options {
    Options {
        algorithm,
        effort,
        ..Options::default()
    }
}

#[test]
fn refined_is_valid_never_worse_than_deepseek_and_avoids_duplicates() {
    // Duplicates: never more than DeepSeek has, so none when DeepSeek has none (the refined plan
    // keeps one of DeepSeek's only where no swap removes it without raising the heaviest GPU of
    // the node plan it started from).
    let mut rng = Rng(0x5EED);
    let mut duplicates_avoided = 0;
    for case in 0..3000 {
        let shape = random_shape(&mut rng);
        let loads = random_loads(&mut rng, shape.num_layers * shape.num_logical);
        let effort = rng.pick(&[
            Effort::Fast,
            Effort::Default,
            Effort::Default,
            Effort::High,
            Effort::Max,
        ]);
        let context = format!("case {case}: {shape:?} {effort:?}");
        let ds = rebalance_experts(&loads, &shape, &options(Algorithm::DeepSeek, effort)).unwrap();
        let refined =
            rebalance_experts(&loads, &shape, &options(Algorithm::Refined, effort)).unwrap();
        let ds_max = check_invariants(&ds, &loads, &shape, &context);
        let refined_max = check_invariants(&refined, &loads, &shape, &context);
        let (_, n) = shape.effective_groups_nodes();
        let experts_in_scope = shape.num_logical / n;
        let k = shape.slots_per_gpu();
        let r = shape.num_replicas;
        for layer in 0..shape.num_layers {
            assert!(
                refined_max[layer] <= ds_max[layer] * (1.0 + 1e-9) + 1e-30,
                "{context}: layer {layer} refined max {} > DeepSeek max {}",
                refined_max[layer],
                ds_max[layer]
            );
            let row = &refined.phy2log[layer * r..(layer + 1) * r];
            let dups = duplicated_replicas(row, k);
            if k <= experts_in_scope {
                let ds_dups = duplicated_replicas(&ds.phy2log[layer * r..(layer + 1) * r], k);
                assert!(
                    dups <= ds_dups,
                    "{context}: layer {layer} has {dups} duplicated replicas, DeepSeek {ds_dups}"
                );
                duplicates_avoided += usize::from(ds_dups > 0 && dups == 0);
            }
        }
        // Deterministic.
        let again =
            rebalance_experts(&loads, &shape, &options(Algorithm::Refined, effort)).unwrap();
        assert_eq!(again, refined, "{context}: not deterministic");
    }
    assert!(
        duplicates_avoided > 0,
        "the sample should contain DeepSeek duplicates that refined avoids"
    );
}

#[test]
fn refined_packing_is_exact_in_size_and_never_heavier_than_greedy() {
    let mut rng = Rng(0xFACE);
    for case in 0..3000 {
        let packs = 1 + rng.below(12);
        let per_pack = 1 + rng.below(10);
        let items = packs * per_pack;
        let layers = 1 + rng.below(3);
        let loads = random_loads(&mut rng, layers * items);
        let effort = rng.pick(&[Effort::Fast, Effort::Default, Effort::High, Effort::Max]);
        let ds = balanced_packing(
            &loads,
            layers,
            items,
            packs,
            &options(Algorithm::DeepSeek, effort),
        )
        .unwrap();
        let refined = balanced_packing(
            &loads,
            layers,
            items,
            packs,
            &options(Algorithm::Refined, effort),
        )
        .unwrap();
        for layer in 0..layers {
            let heaviest = |pack_index: &[i64], rank: &[i64]| {
                let mut sums = vec![0.0f64; packs];
                let mut seen = vec![vec![false; per_pack]; packs];
                for i in 0..items {
                    let p = pack_index[layer * items + i] as usize;
                    let q = rank[layer * items + i] as usize;
                    assert!(p < packs && q < per_pack, "case {case}: out of range");
                    assert!(!seen[p][q], "case {case}: two items share a position");
                    seen[p][q] = true;
                    sums[p] += f64::from(loads[layer * items + i]);
                }
                sums.into_iter().fold(0.0, f64::max)
            };
            let a = heaviest(&ds.pack_index, &ds.rank_in_pack);
            let b = heaviest(&refined.pack_index, &refined.rank_in_pack);
            assert!(
                b <= a * (1.0 + 1e-9) + 1e-30,
                "case {case}: refined {b} > greedy {a}"
            );
        }
    }
}
