//! The everyday, fixed-seed version of the fuzz targets (`fuzz/`), on stable Rust: the same
//! generator and checks (`fuzz/src/harness.rs`) driven by a SplitMix64 PRNG instead of libFuzzer.
//!
//! Every call goes through the exported `extern "C"` functions. For each call the harness checks:
//! the status is OK exactly when the call has no fault (by the harness's own model of the
//! documented rules) and otherwise one of the faults' statuses; never `EPLB_STATUS_INTERNAL`; on
//! error a non-empty message and every byte of every buffer (and the canaries between them)
//! unchanged; on success no byte written outside the outputs, and the outputs a valid plan /
//! packing / replication / statistics record. A failure prints the seed that reproduces it
//! (`EPLB_RANDOM_SEED=<seed> cargo test --release --test ffi_random -- one_seed`).

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::collections::BTreeMap;

use eplb::ffi::*;
use harness::{Func, SplitMix, fuzz_one, misc_one, status_name};

/// Calls per function (ten functions), plus as many checks of the functions without buffers.
const CASES: u64 = 1000;

fn seed(func_index: u64, case: u64) -> u64 {
    0x5EED_0000_0000 ^ (func_index << 32) ^ case
}

fn run_seed(func_index: u64, seed: u64) -> i32 {
    let func = Func::ALL[func_index as usize];
    let mut src = SplitMix(seed);
    match fuzz_one(&mut src, func) {
        Ok(out) => out.status,
        Err(violation) => panic!(
            "seed {seed:#x} ({}): {violation}\nreproduce: EPLB_RANDOM_SEED={func_index}:{seed:#x} cargo test --release --test ffi_random -- one_seed",
            func.name()
        ),
    }
}

#[test]
fn random_calls_keep_the_contract() {
    let mut report = String::new();
    for (index, func) in Func::ALL.iter().enumerate() {
        let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
        for case in 0..CASES {
            let status = run_seed(index as u64, seed(index as u64, case));
            *seen.entry(status).or_default() += 1;
        }
        report += &format!("{:28} {:?}\n", func.name(), seen);
        // The generator reaches both success and the main failure classes of every function.
        let ok = seen.get(&EPLB_STATUS_OK).copied().unwrap_or(0);
        assert!(
            ok as u64 >= CASES / 5,
            "{}: only {ok} of {CASES} calls succeeded: {seen:?}",
            func.name()
        );
        for status in [
            EPLB_STATUS_NULL_POINTER,
            EPLB_STATUS_MISALIGNED_POINTER,
            EPLB_STATUS_SIZE_OVERFLOW,
            EPLB_STATUS_ZERO_SIZE,
            EPLB_STATUS_INVALID_LOAD,
        ] {
            assert!(
                seen.contains_key(&status),
                "{} never returned {}: {seen:?}",
                func.name(),
                status_name(status)
            );
        }
    }
    println!("{report}");
}

#[test]
fn random_checks_of_the_functions_without_buffers() {
    for case in 0..CASES * 2 {
        let mut src = SplitMix(0xA11C_E000 ^ case);
        misc_one(&mut src);
    }
}

/// Reproduces one failing seed: `EPLB_RANDOM_SEED=<func index>:<seed>`.
#[test]
fn one_seed() {
    let Ok(spec) = std::env::var("EPLB_RANDOM_SEED") else {
        return;
    };
    let (index, seed) = spec
        .split_once(':')
        .expect("EPLB_RANDOM_SEED=<func index>:<seed>");
    let index: u64 = index.parse().expect("function index");
    let seed = u64::from_str_radix(seed.trim_start_matches("0x"), 16).expect("hex seed");
    println!("{}", status_name(run_seed(index, seed)));
}
