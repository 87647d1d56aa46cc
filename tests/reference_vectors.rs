//! DeepSeek compatibility: the DeepSeek algorithm reproduces every reference vector exactly
//! (`tests/data/deepseek_reference.json`, outputs of DeepSeek's `eplb.py` with a stable sort).

use eplb::{Algorithm, Options, Shape, balanced_packing, rebalance_experts, replicate_experts};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/deepseek_reference.json"
    ))
    .expect("reference vectors");
    serde_json::from_str(&text).expect("valid JSON")
}

fn matrix_f32(v: &Value) -> (Vec<f32>, usize, usize) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let flat = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    (flat, rows.len(), cols)
}

fn matrix_i64(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn usize_of(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap() as usize
}

const DEEPSEEK: Options = Options {
    algorithm: Algorithm::DeepSeek,
    effort: eplb::Effort::Default,
    max_balance_loss: 0.0,
    max_off_home_share: 0.0,
};

#[test]
fn rebalance_matches_reference() {
    let v = vectors();
    let cases = v["rebalance"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (weight, layers, experts) = matrix_f32(&case["weight"]);
        let replicas = usize_of(case, "num_replicas");
        let shape = Shape::new(
            layers,
            experts,
            replicas,
            usize_of(case, "num_groups"),
            usize_of(case, "num_nodes"),
            usize_of(case, "num_gpus"),
        )
        .unwrap();
        let plan = rebalance_experts(&weight, &shape, &DEEPSEEK).unwrap();
        assert_eq!(
            plan.phy2log,
            matrix_i64(&case["phy2log"]),
            "{name}: phy2log"
        );
        assert_eq!(plan.logcnt, matrix_i64(&case["logcnt"]), "{name}: logcnt");
        let width = replicas - experts + 1;
        let log2phy = plan.log2phy(width).unwrap();
        let sets = case["log2phy_sets"].as_array().unwrap();
        for (layer, layer_sets) in sets.iter().enumerate() {
            for (expert, set) in layer_sets.as_array().unwrap().iter().enumerate() {
                let want: Vec<i64> = set
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect();
                let base = (layer * experts + expert) * width;
                let got: Vec<i64> = log2phy[base..base + width]
                    .iter()
                    .copied()
                    .filter(|&s| s >= 0)
                    .collect();
                assert_eq!(got, want, "{name}: log2phy[{layer}][{expert}]");
            }
        }
        // The same through the integer entry point.
        let as_i64: Vec<i64> = weight.iter().map(|&w| w as i64).collect();
        let plan_i64 = rebalance_experts(&as_i64, &shape, &DEEPSEEK).unwrap();
        assert_eq!(plan_i64.phy2log, plan.phy2log, "{name}: i64 loads");
    }
}

#[test]
fn packing_matches_reference() {
    let v = vectors();
    for case in v["balanced_packing"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (weight, layers, items) = matrix_f32(&case["weight"]);
        let packs = usize_of(case, "num_packs");
        let packing = balanced_packing(&weight, layers, items, packs, &DEEPSEEK).unwrap();
        assert_eq!(
            packing.pack_index,
            matrix_i64(&case["pack_index"]),
            "{name}"
        );
        assert_eq!(
            packing.rank_in_pack,
            matrix_i64(&case["rank_in_pack"]),
            "{name}"
        );
    }
}

#[test]
fn replication_matches_reference() {
    let v = vectors();
    for case in v["replicate_experts"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (weight, layers, experts) = matrix_f32(&case["weight"]);
        let physical = usize_of(case, "num_physical");
        let rep = replicate_experts(&weight, layers, experts, physical).unwrap();
        assert_eq!(rep.phy2log, matrix_i64(&case["phy2log"]), "{name}");
        assert_eq!(
            rep.replica_rank,
            matrix_i64(&case["replica_rank"]),
            "{name}"
        );
        assert_eq!(rep.logcnt, matrix_i64(&case["logcnt"]), "{name}");
    }
}
