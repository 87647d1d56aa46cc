//! Fuzz target: `evaluate_plan` (see fuzz/README.md).
#![no_main]

use eplb_fuzz::harness::Func;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eplb_fuzz::fuzz_call(data, &[Func::Evaluate, Func::EvaluateI64]);
});
