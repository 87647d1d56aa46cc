//! Shared by the examples: deterministic load generators, the trace reader and timing.
#![allow(dead_code)]

use std::time::Instant;

/// A small deterministic PRNG (SplitMix64), so examples need no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// Realistically skewed DeepSeek-V3-like loads, `[layers][experts]` as token counts: each group's
/// popularity is log-normal (so the node split matters), each expert log-normal within it, and a few
/// hot experts per layer. Calibrated on the SGLang DeepSeek-V3 traces: the busiest expert carries
/// about 5 to 8 times the mean (single layers up to 14x), busiest group 1.5 to 2 times the mean.
pub fn deepseek_like(layers: usize, experts: usize, groups: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let group_size = experts / groups;
    let mut out = Vec::with_capacity(layers * experts);
    for _ in 0..layers {
        let group_pop: Vec<f64> = (0..groups).map(|_| (0.45 * rng.normal()).exp()).collect();
        let mut row: Vec<f64> = (0..experts)
            .map(|e| group_pop[e / group_size] * (0.6 * rng.normal()).exp())
            .collect();
        for _ in 0..3 {
            let e = rng.below(experts);
            row[e] *= 2.0 + 3.0 * rng.uniform();
        }
        let mean = row.iter().sum::<f64>() / experts as f64;
        // Scale to token counts of a 1M-token window.
        out.extend(row.iter().map(|&v| ((v / mean) * 4096.0).round() as f32));
    }
    out
}

/// Load families of the quality table.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    Uniform,
    LogNormal(f64),
    Zipf(f64),
    Sparse,
    DeepSeekLike,
}

impl Family {
    pub fn name(self) -> String {
        match self {
            Family::Uniform => "uniform".into(),
            Family::LogNormal(s) => format!("lognormal s={s}"),
            Family::Zipf(a) => format!("zipf a={a}"),
            Family::Sparse => "sparse 50% zeros".into(),
            Family::DeepSeekLike => "deepseek-like".into(),
        }
    }

    pub fn generate(self, layers: usize, experts: usize, groups: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        match self {
            Family::DeepSeekLike => deepseek_like(layers, experts, groups, seed),
            _ => (0..layers)
                .flat_map(|_| {
                    let mut perm: Vec<usize> = (0..experts).collect();
                    for i in (1..experts).rev() {
                        perm.swap(i, rng.below(i + 1));
                    }
                    (0..experts)
                        .map(|e| {
                            let v = match self {
                                Family::Uniform => 0.5 + rng.uniform(),
                                Family::LogNormal(s) => (s * rng.normal()).exp(),
                                Family::Zipf(a) => 1.0 / ((perm[e] + 1) as f64).powf(a),
                                Family::Sparse => {
                                    if rng.uniform() < 0.5 {
                                        0.0
                                    } else {
                                        (rng.normal()).exp()
                                    }
                                }
                                Family::DeepSeekLike => unreachable!(),
                            };
                            (v * 1000.0) as f32
                        })
                        .collect::<Vec<f32>>()
                })
                .collect(),
        }
    }
}

/// Reads `{"logical_count": [[...], ...]}` and keeps the rows that are not all zero (the dense
/// layers of DeepSeek-V3 are). Returns `(loads, layers, experts)`.
pub fn read_trace(path: &str) -> Result<(Vec<f32>, usize, usize), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let rows = value["logical_count"]
        .as_array()
        .ok_or_else(|| format!("{path}: no \"logical_count\" array"))?;
    let mut loads = Vec::new();
    let mut experts = 0;
    let mut layers = 0;
    for row in rows {
        let row: Vec<f32> = row
            .as_array()
            .ok_or_else(|| format!("{path}: a row is not an array"))?
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
            .collect();
        if row.iter().all(|&v| v == 0.0) {
            continue;
        }
        experts = row.len();
        loads.extend(row);
        layers += 1;
    }
    Ok((loads, layers, experts))
}

/// The shared traces, when present beside the repository.
pub fn shared_trace(name: &str) -> Option<String> {
    let path = format!("{}/../shared/traces/{name}", env!("CARGO_MANIFEST_DIR"));
    std::path::Path::new(&path).exists().then_some(path)
}

/// A DeepSeek-V3 plan shape of DESIGN.md section 5 (58 layers x 256 experts, 8 groups).
pub struct Case {
    pub name: &'static str,
    pub replicas: usize,
    pub groups: usize,
    pub nodes: usize,
    pub gpus: usize,
}

/// The shapes the benches and the speed table plan: prefill (hierarchical, 4 x 8 GPUs), global on
/// 32 GPUs (3 nodes: the groups do not split evenly), decode (global, 144 GPUs, 2 slots each).
pub const V3_CASES: &[Case] = &[
    Case {
        name: "prefill_4x8",
        replicas: 288,
        groups: 8,
        nodes: 4,
        gpus: 32,
    },
    Case {
        name: "global_32",
        replicas: 288,
        groups: 8,
        nodes: 3,
        gpus: 32,
    },
    Case {
        name: "decode_144",
        replicas: 288,
        groups: 8,
        nodes: 18,
        gpus: 144,
    },
];

/// C-API options with `algorithm` and `effort`, the rest at their defaults.
pub fn c_options(algorithm: i32, effort: i32) -> eplb::ffi::eplb_options {
    let mut o = std::mem::MaybeUninit::<eplb::ffi::eplb_options>::uninit();
    // SAFETY: `o` is a valid, aligned eplb_options-sized buffer; init fills every field.
    let mut o = unsafe {
        eplb::ffi::eplb_options_init(o.as_mut_ptr());
        o.assume_init()
    };
    o.algorithm = algorithm;
    o.effort = effort;
    o
}

/// Output buffers of C-API plans of `layers` x `experts` with `replicas` slots; `log2phy` rows are
/// `replicas - experts + 1` wide, as DeepSeek sizes them.
pub struct PlanBuffers {
    pub phy2log: Vec<i64>,
    pub log2phy: Vec<i64>,
    pub width: usize,
    pub logcnt: Vec<i64>,
}

impl PlanBuffers {
    pub fn new(layers: usize, experts: usize, replicas: usize) -> Self {
        let width = replicas - experts + 1;
        PlanBuffers {
            phy2log: vec![0; layers * replicas],
            log2phy: vec![0; layers * experts * width],
            width,
            logcnt: vec![0; layers * experts],
        }
    }
}

/// Plans `loads` (`layers` x `experts`) for `case` through the C API: `eplb_rebalance_experts`
/// (writing `log2phy`) when `with_log2phy`, else `eplb_plan_experts` with a NULL `log2phy`.
/// Panics on a status other than OK or on buffers too small for the case.
pub fn c_plan(
    loads: &[f32],
    (layers, experts): (usize, usize),
    case: &Case,
    options: &eplb::ffi::eplb_options,
    out: &mut PlanBuffers,
    with_log2phy: bool,
) {
    assert!(loads.len() >= layers * experts && out.phy2log.len() >= layers * case.replicas);
    assert!(out.width == case.replicas - experts + 1 && out.logcnt.len() >= layers * experts);
    // SAFETY: every buffer has at least the documented length for this shape (checked above);
    // NULL log2phy, group_node, old_phy2log and stats are allowed in eplb_plan_experts.
    let status = unsafe {
        if with_log2phy {
            eplb::ffi::eplb_rebalance_experts(
                loads.as_ptr(),
                layers,
                experts,
                case.replicas,
                case.groups,
                case.nodes,
                case.gpus,
                options,
                out.phy2log.as_mut_ptr(),
                out.log2phy.as_mut_ptr(),
                out.width,
                out.logcnt.as_mut_ptr(),
            )
        } else {
            eplb::ffi::eplb_plan_experts(
                loads.as_ptr(),
                layers,
                experts,
                case.replicas,
                case.groups,
                case.nodes,
                case.gpus,
                options,
                std::ptr::null(),
                out.phy2log.as_mut_ptr(),
                std::ptr::null_mut(),
                0,
                out.logcnt.as_mut_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    };
    assert_eq!(status, eplb::ffi::EPLB_STATUS_OK);
}

/// Median seconds per call of `f` over enough repetitions to fill about `budget` seconds.
pub fn time_per_call<T>(budget: f64, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    std::hint::black_box(f());
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let reps = ((budget / once) as usize).clamp(3, 2000);
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Formats seconds as a short human figure.
pub fn fmt_time(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} us", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.2} s", seconds)
    }
}
