//! One chitchat node per process, printing one JSON object per line for each
//! event; leaves the cluster and exits 0 on SIGINT or SIGTERM.
//!
//! ```text
//! cargo run -p chitchat-tokio --example node -- --listen 127.0.0.1:7000 --name n0
//! cargo run -p chitchat-tokio --example node -- --listen 127.0.0.1:7001 --seed 127.0.0.1:7000 --name n1
//! ```
//!
//! `--help` lists the options; `chitchat_tools::cli` documents the output.

use std::process::ExitCode;

fn main() -> ExitCode {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            chitchat_tools::cli::run(chitchat_tokio::runtime(), std::env::args().skip(1)).await
        })
}
