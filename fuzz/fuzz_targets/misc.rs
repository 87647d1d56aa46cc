//! Fuzz target: `misc`: eplb_status_str, eplb_last_error_message, eplb_options_init,
//! eplb_version, and raw `eplb_options` bytes through the planning calls (see fuzz/README.md).
#![no_main]

use arbitrary::Unstructured;
use eplb_fuzz::FuzzSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eplb_fuzz::harness::misc_one(&mut FuzzSource(Unstructured::new(data)));
});
