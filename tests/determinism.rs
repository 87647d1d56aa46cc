//! Determinism: the same input gives bit-identical outputs on repeated calls and from other threads,
//! for both algorithms, every planning entry point, and DeepSeek-V3-like shapes (4 of the 58 layers
//! to stay quick): prefill (256 experts, 288 slots, 8 groups, 4 nodes, 32 GPUs: hierarchical) and
//! decode (288 slots on 144 GPUs, 18 nodes: global, since 8 % 18 != 0), plus smaller shapes.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use eplb::ffi::*;
use harness::{Arg, Call, Func, Loads, OptsBytes, Outcome, Sizes, SplitMix, StatsSpec, check, run};

/// Skewed loads like the DeepSeek-V3 traces (the busiest expert several times the mean).
fn skewed(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            // Pareto-like tail: mostly hundreds, a few thousands.
            (200.0 / (1.0 - 0.97 * u).powf(1.3)) as i64 + (rng.next_u64() % 50) as i64
        })
        .collect()
}

const SHAPES: [(&str, Sizes); 4] = [
    ("DeepSeek-V3 prefill", Sizes::plan(4, 256, 288, 8, 4, 32)),
    ("DeepSeek-V3 decode", Sizes::plan(4, 256, 288, 8, 18, 144)),
    ("Qwen3-30B-A3B", Sizes::plan(3, 128, 136, 1, 1, 8)),
    ("Mixtral", Sizes::plan(2, 8, 16, 1, 1, 8)),
];

/// Every planning call of one shape: each entry point, both algorithms, f32 and i64 loads.
fn calls(s: Sizes, seed: u64) -> Vec<Call> {
    let loads = skewed(s.layers * s.logical, seed);
    let mut all = Vec::new();
    for alg in [EPLB_ALGORITHM_DEEPSEEK, EPLB_ALGORITHM_REFINED] {
        let opts = OptsBytes::algorithm(alg);
        for func in [
            Func::Rebalance,
            Func::RebalanceI64,
            Func::Replan,
            Func::ReplanI64,
            Func::Plan,
            Func::PlanI64,
        ] {
            let mut call = Call::new(func, s, Loads::I64(loads.clone()));
            call.opts = Some(opts.clone());
            if matches!(
                func,
                Func::Replan | Func::ReplanI64 | Func::Plan | Func::PlanI64
            ) {
                call.stats = Some(StatsSpec::new(harness::MIGRATION_SIZE));
                call.old_phy2log = Some(shifted_plan(&s, seed));
            }
            all.push(call);
        }
        let mut pack = Call::new(
            Func::Packing,
            Sizes {
                layers: s.layers,
                logical: s.logical,
                replicas: 0,
                groups: 1,
                nodes: 1,
                gpus: s.gpus.min(s.logical),
                width: 1,
            },
            Loads::I64(loads.clone()),
        );
        if s.logical % pack.sizes.gpus != 0 {
            pack.sizes.gpus = 1;
        }
        pack.opts = Some(opts);
        all.push(pack);
    }
    let mut rep = Call::new(Func::Replicate, s, Loads::I64(loads.clone()));
    rep.sizes.width = 1;
    all.push(rep);
    for func in [Func::Evaluate, Func::EvaluateI64] {
        let mut eval = Call::new(func, s, Loads::I64(loads.clone()));
        eval.in_phy2log = shifted_plan(&s, seed ^ 1);
        eval.old_phy2log = Some(shifted_plan(&s, seed));
        all.push(eval);
    }
    all
}

/// A valid plan: experts in order, the extra slots to `(seed + i) % E`, rotated per layer.
fn shifted_plan(s: &Sizes, seed: u64) -> Vec<i64> {
    let (e, r) = (s.logical, s.replicas);
    let mut plan = Vec::new();
    for layer in 0..s.layers {
        let row: Vec<i64> = (0..r)
            .map(|i| if i < e { i } else { (seed as usize + i * 7) % e } as i64)
            .collect();
        let k = (layer * 5 + seed as usize) % r;
        plan.extend(row[k..].iter().chain(&row[..k]));
    }
    plan
}

fn outputs(out: &Outcome) -> &[u8] {
    &out.after
}

#[test]
fn same_input_same_output_repeated_and_across_threads() {
    for (name, s) in SHAPES {
        let calls = calls(s, 0xD5_2025);
        let reference: Vec<Outcome> = calls.iter().map(run).collect();
        for (call, out) in calls.iter().zip(&reference) {
            assert_eq!(
                out.status,
                EPLB_STATUS_OK,
                "{name}: {} {}",
                call.describe(),
                out.message
            );
            check(call, out).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Repeated on this thread.
        for (call, want) in calls.iter().zip(&reference) {
            let again = run(call);
            assert!(
                outputs(&again) == outputs(want),
                "{name}: repeat differs: {}",
                call.describe()
            );
        }
        // From other threads at the same time.
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (calls, reference) = (&calls, &reference);
                scope.spawn(move || {
                    for k in 0..calls.len() {
                        let i = (k + t * 3) % calls.len();
                        let got = run(&calls[i]);
                        assert!(
                            outputs(&got) == outputs(&reference[i]),
                            "{name}: thread {t} differs: {}",
                            calls[i].describe()
                        );
                    }
                });
            }
        });
    }
}

/// Every effort level is deterministic too, and DeepSeek's plan does not depend on the effort.
#[test]
fn every_effort_is_deterministic() {
    let s = SHAPES[0].1;
    let loads = skewed(s.layers * s.logical, 7);
    let mut deepseek_plans = Vec::new();
    for alg in [EPLB_ALGORITHM_REFINED, EPLB_ALGORITHM_DEEPSEEK] {
        for effort in [
            EPLB_EFFORT_FAST,
            EPLB_EFFORT_DEFAULT,
            EPLB_EFFORT_HIGH,
            EPLB_EFFORT_MAX,
        ] {
            let mut opts = OptsBytes::algorithm(alg);
            opts.set_i32(12, effort);
            let mut call = Call::new(Func::Rebalance, s, Loads::I64(loads.clone()));
            call.opts = Some(opts);
            let a = run(&call);
            let b = run(&call);
            assert_eq!(a.status, EPLB_STATUS_OK, "{}", a.message);
            check(&call, &a).unwrap();
            assert!(
                a.after == b.after,
                "algorithm {alg} effort {effort} not deterministic"
            );
            if alg == EPLB_ALGORITHM_DEEPSEEK {
                deepseek_plans.push(a.i64s(Arg::Phy2log, s.layers * s.replicas));
            }
        }
    }
    assert!(
        deepseek_plans.windows(2).all(|w| w[0] == w[1]),
        "DeepSeek depends on effort"
    );
}

/// f32 and i64 entry points agree when the loads are the same integers.
#[test]
fn f32_and_i64_loads_give_the_same_plan() {
    for (name, s) in SHAPES {
        let loads = skewed(s.layers * s.logical, 99);
        for alg in [EPLB_ALGORITHM_DEEPSEEK, EPLB_ALGORITHM_REFINED] {
            let mut plans = Vec::new();
            for func in [Func::Rebalance, Func::RebalanceI64] {
                let mut call = Call::new(func, s, Loads::I64(loads.clone()));
                call.opts = Some(OptsBytes::algorithm(alg));
                let out = run(&call);
                assert_eq!(out.status, EPLB_STATUS_OK, "{}", out.message);
                plans.push(out.i64s(Arg::Phy2log, s.layers * s.replicas));
            }
            assert_eq!(plans[0], plans[1], "{name}, algorithm {alg}");
        }
    }
}
