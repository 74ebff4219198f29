//! The conformance suite of `chitchat-driver`, on async-std.

chitchat_tools::conformance_tests!(chitchat_async_std::runtime(), async_std::task::block_on);
