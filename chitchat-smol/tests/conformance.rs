//! The conformance suite of `chitchat-driver`, on smol.

chitchat_tools::conformance_tests!(chitchat_smol::runtime(), smol::block_on);
