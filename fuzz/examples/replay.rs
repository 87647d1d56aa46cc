//! Decodes fuzz inputs the way a target does, prints each call, runs it through the harness and
//! reports the status, the time, and any contract violation. Works on stable without libFuzzer:
//!
//! `cargo run --release --example replay -- <target> <input file>...`
//!
//! (`<target>` is a fuzz target name: packing, replication, rebalance, replan, plan_experts,
//! evaluate_plan; misc inputs replay with `cargo fuzz run misc <file>`.)

use std::time::Instant;

use arbitrary::Unstructured;
use eplb_fuzz::FuzzSource;
use eplb_fuzz::harness::{self, Func, Source, status_name};

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("target name");
    let funcs: &[Func] = match target.as_str() {
        "packing" => &[Func::Packing],
        "replication" => &[Func::Replicate],
        "rebalance" => &[Func::Rebalance, Func::RebalanceI64],
        "replan" => &[Func::Replan, Func::ReplanI64],
        "plan_experts" => &[Func::Plan, Func::PlanI64],
        "evaluate_plan" => &[Func::Evaluate, Func::EvaluateI64],
        other => panic!("unknown target {other}"),
    };
    for path in args {
        let data = std::fs::read(&path).expect("read input");
        let mut src = FuzzSource(Unstructured::new(&data));
        let func = src.pick(funcs);
        let (call, expect) = harness::generate(&mut src, func);
        println!("{path}: {}", call.describe());
        println!("  loads: {:?}", call.loads);
        let start = Instant::now();
        let out = harness::run(&call);
        let took = start.elapsed();
        println!("  {} in {took:?}: {}", status_name(out.status), out.message);
        if let Err(e) =
            harness::check(&call, &out).and_then(|()| expect.check(out.status, &out.message))
        {
            println!("  VIOLATION: {e}");
        }
    }
}
