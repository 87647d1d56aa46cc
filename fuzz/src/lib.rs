//! Support for eplb's fuzz targets: the shared [`harness`] (also compiled into the stable tests
//! `tests/ffi_random.rs` and friends) and a [`harness::Source`] over libFuzzer's bytes.

pub mod harness;

use arbitrary::Unstructured;
use harness::{Func, Source};

/// Choices drawn from the fuzzer's input; an exhausted input yields the smallest choice.
pub struct FuzzSource<'a>(pub Unstructured<'a>);

impl Source for FuzzSource<'_> {
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }
}

/// One fuzz execution: picks one of `funcs`, generates a call from `data`, runs it through the C
/// ABI and panics (a crash for libFuzzer) on any contract violation.
pub fn fuzz_call(data: &[u8], funcs: &[Func]) {
    let mut src = FuzzSource(Unstructured::new(data));
    let func = src.pick(funcs);
    if let Err(violation) = harness::fuzz_one(&mut src, func) {
        panic!("contract violation: {violation}");
    }
}
