//! The fault campaign in `cargo test`: hundreds of seeds of small clusters under
//! mixed faults, with the simulator's invariants after every step and
//! convergence required once the faults stop.

use chitchat_core::testing::campaign::run_seed;

#[test]
fn fault_campaign() {
    let seeds: u64 = std::env::var("CAMPAIGN_SEEDS").ok().and_then(|seeds| seeds.parse().ok()).unwrap_or(300);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        if let Err(message) = run_seed(seed) {
            failures.push(message);
        }
    }
    assert!(failures.is_empty(), "{} of {seeds} seeds failed:\n{}", failures.len(), failures.join("\n"));
}
