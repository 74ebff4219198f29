//! The long fault campaign: many seeds of
//! [`chitchat_core::testing::campaign::run_seed`], a small cluster under a random mix
//! of faults each, invariants checked after every step and convergence required
//! at the end.
//!
//! ```text
//! cargo run --release -p chitchat-core --features sim --example campaign -- --seeds 10000 [--start 0]
//! ```
//!
//! Exits 1 on the first failure, printing the seed and the command that replays it.

use std::process::ExitCode;
use std::time::Instant;

use chitchat_core::testing::campaign::run_seed;

fn main() -> ExitCode {
    let mut seeds = 1_000u64;
    let mut start = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|value| value.parse().ok());
        match (flag.as_str(), value) {
            ("--seeds", Some(value)) => seeds = value,
            ("--start", Some(value)) => start = value,
            _ => {
                eprintln!("usage: campaign [--seeds N] [--start S]");
                return ExitCode::from(2);
            }
        }
    }
    let wall = Instant::now();
    let (mut faults, mut slowest) = (0, (0, 0));
    for seed in start..start + seeds {
        match run_seed(seed) {
            Ok(outcome) => {
                faults += outcome.faults;
                if outcome.rounds_to_converge > slowest.0 {
                    slowest = (outcome.rounds_to_converge, seed);
                }
            }
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        }
        if (seed - start + 1).is_multiple_of(1_000) {
            eprintln!("{} seeds passed ({:.0} s)", seed - start + 1, wall.elapsed().as_secs_f64());
        }
    }
    println!(
        "{seeds} seeds passed from {start}: {faults} faults injected, slowest convergence {} calm rounds (seed {}), {:.1} s",
        slowest.0,
        slowest.1,
        wall.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
