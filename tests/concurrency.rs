//! Thread safety of the C API: many threads call every exported function at once, with a mix of
//! valid and invalid input, and every result equals the one computed single-threaded beforehand,
//! bit for bit. Each thread's `eplb_last_error_message` is always its own last error's message
//! (never another thread's), and successful calls leave it alone.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::sync::Barrier;

use eplb::ffi::*;
use harness::{Call, Func, Outcome, SplitMix, generate, last_error, run, status_str};

const THREADS: usize = 8;
const ROUNDS: usize = 4;
const CASES_PER_FUNCTION: u64 = 64;

/// What a call must reproduce: status, message (addresses removed), every arena byte after it.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    status: i32,
    message: String,
    after: Vec<u8>,
}

/// Drops `(address 0x...)`: a misaligned pointer's message gives its address, which differs per run.
fn normalize(message: &str) -> String {
    match message.find("(address 0x") {
        Some(i) => {
            let end = message[i..].find(')').map_or(message.len(), |j| i + j + 1);
            format!("{}{}", &message[..i], &message[end..])
        }
        None => message.to_string(),
    }
}

fn expected(out: &Outcome) -> Expected {
    Expected {
        status: out.status,
        message: normalize(&out.message),
        after: out.after.clone(),
    }
}

/// A mix of valid and invalid calls of every function (the fuzz generator with fixed seeds).
fn calls() -> Vec<Call> {
    let mut all = Vec::new();
    for (i, &func) in Func::ALL.iter().enumerate() {
        for case in 0..CASES_PER_FUNCTION {
            let mut src = SplitMix(0xC0C0_0000 ^ ((i as u64) << 20) ^ case);
            all.push(generate(&mut src, func).0);
        }
    }
    all
}

#[test]
fn threads_reproduce_single_threaded_results_and_keep_their_own_messages() {
    let calls = calls();
    // Single-threaded reference, each call on a fresh thread state is not needed: errors set the
    // message, successes keep it, and both are tracked per thread below.
    let reference: Vec<Expected> = calls.iter().map(|c| expected(&run(c))).collect();
    let errors = reference
        .iter()
        .filter(|e| e.status != EPLB_STATUS_OK)
        .count();
    assert!(
        errors > calls.len() / 5 && errors < calls.len() * 4 / 5,
        "mix: {errors} errors"
    );
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (calls, reference, barrier) = (&calls, &reference, &barrier);
            scope.spawn(move || {
                let mut order: Vec<usize> = (0..calls.len()).collect();
                let mut rng = SplitMix(0x7EAD ^ t as u64);
                barrier.wait();
                // This thread's own last error message (empty before its first failure).
                let mut mine = String::new();
                for round in 0..ROUNDS {
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.next_u64() as usize % (i + 1));
                    }
                    for &i in &order {
                        let out = run(&calls[i]);
                        let want = &reference[i];
                        let got = expected(&out);
                        assert_eq!(
                            got.status,
                            want.status,
                            "thread {t} round {round}: {}",
                            calls[i].describe()
                        );
                        if out.status == EPLB_STATUS_OK {
                            assert_eq!(
                                normalize(&out.message),
                                mine,
                                "thread {t}: a successful call changed this thread's message"
                            );
                        } else {
                            assert_eq!(
                                got.message,
                                want.message,
                                "thread {t}: message of another call: {}",
                                calls[i].describe()
                            );
                            mine = got.message.clone();
                        }
                        assert!(
                            got.after == want.after,
                            "thread {t} round {round}: outputs differ from the single-threaded run: {}",
                            calls[i].describe()
                        );
                        // The functions without buffers, interleaved.
                        assert!(!status_str(out.status).is_empty());
                        assert!(!eplb_version().is_null());
                        let mut o = std::mem::MaybeUninit::<eplb_options>::zeroed();
                        // SAFETY: an aligned, writable eplb_options.
                        unsafe { eplb_options_init(o.as_mut_ptr()) };
                        // SAFETY: initialised above.
                        let o = unsafe { o.assume_init() };
                        assert_eq!(o.struct_size, size_of::<eplb_options>());
                        assert_eq!(normalize(&last_error().0), mine);
                    }
                }
            });
        }
    });
}

/// Two threads whose failures alternate: each sees only its own message, every time.
#[test]
fn last_error_messages_are_per_thread() {
    const ITERATIONS: usize = 2000;
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        for t in 0..2usize {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for i in 0..ITERATIONS {
                    // Thread 0 fails on num_packs, thread 1 on a NaN load at a varying index.
                    let w = [1.0f32, f32::NAN, 2.0, 3.0];
                    let mut p = [0i64; 4];
                    let mut r = [0i64; 4];
                    let (packs, expected) = if t == 0 {
                        (0, "num_packs must be at least 1, got 0".to_string())
                    } else {
                        (
                            2,
                            "weight[0][1] = NaN is invalid: loads must not be NaN".to_string(),
                        )
                    };
                    // SAFETY: four-element buffers.
                    let st = unsafe {
                        eplb_balanced_packing(
                            w.as_ptr(),
                            1,
                            4,
                            packs,
                            std::ptr::null(),
                            p.as_mut_ptr(),
                            r.as_mut_ptr(),
                        )
                    };
                    assert_ne!(st, EPLB_STATUS_OK);
                    assert_eq!(last_error().0, expected, "thread {t} iteration {i}");
                }
            });
        }
    });
}
