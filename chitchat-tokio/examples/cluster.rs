//! A cluster of N nodes (`--nodes N`, default 5) over UDP on loopback, in one
//! process: membership converging, a key spreading, a stopped node detected dead.
//!
//! ```text
//! cargo run --release -p chitchat-tokio --example cluster -- --nodes 5
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            chitchat_tools::demo::run(chitchat_tokio::runtime(), std::env::args().skip(1)).await
        })
}
