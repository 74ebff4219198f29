//! A tokio node, a smol node and an async-std node in one cluster.

#[test]
fn tokio_smol_and_async_std_nodes_form_one_cluster() {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let runtimes =
            vec![chitchat_tokio::runtime(), chitchat_smol::runtime(), chitchat_async_std::runtime()];
        chitchat_tools::conformance::mixed_runtimes_form_one_cluster(runtimes).await;
    });
}
