//! The conformance suite of `chitchat-driver`, on tokio.

use std::future::Future;

fn block_on<F: Future>(future: F) -> F::Output {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(future)
}

chitchat_tools::conformance_tests!(chitchat_tokio::runtime(), block_on);
