//! The conformance suite of `chitchat-driver`, on smol.

chitchat_driver::conformance_tests!(chitchat_smol::runtime(), smol::block_on);
