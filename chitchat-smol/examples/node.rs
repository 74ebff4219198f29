//! One chitchat node per process, printing one JSON object per line for each
//! event; leaves the cluster and exits 0 on SIGINT or SIGTERM.
//!
//! ```text
//! cargo run -p chitchat-smol --example node -- --listen 127.0.0.1:7000 --name n0
//! cargo run -p chitchat-smol --example node -- --listen 127.0.0.1:7001 --seed 127.0.0.1:7000 --name n1
//! ```
//!
//! `--help` lists the options; `chitchat_tools::cli` documents the output.

use std::process::ExitCode;

fn main() -> ExitCode {
    smol::block_on(chitchat_tools::cli::run(chitchat_smol::runtime(), std::env::args().skip(1)))
}
