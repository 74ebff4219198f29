//! The large-state workloads of the catch-up benchmarks (the simulator's
//! `catchup` example, the tokio `catchup_bench`, and the chitchat 0.13
//! harness in `compare/`, which spells the same function out): keys and
//! values that every bench generates alike.

/// The key of index `k`: `key-00000`, 9 bytes.
pub fn key(k: usize) -> String {
    format!("key-{k:05}")
}

/// A value of `len` bytes for key `k` of node `node`: random letters from
/// `rng`, or (`compressible`) text shaped like the JSON records chitchat's
/// main user stores, which compresses about sevenfold.
pub fn value(rng: &mut fastrand::Rng, node: usize, k: usize, len: usize, compressible: bool) -> String {
    if !compressible {
        return std::iter::repeat_with(|| rng.alphanumeric()).take(len).collect();
    }
    let mut text = String::with_capacity(len + 128);
    let mut field = 0;
    text.push('{');
    while text.len() < len {
        text.push_str(&format!(
            "\"split-{field}\":{{\"index_uid\":\"index-{node:03}:01H\",\"source\":\"kafka\",\"position\":{}}},",
            k * 31 + field
        ));
        field += 1;
    }
    text.truncate(len.saturating_sub(1));
    text.push('}');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_asked_length() {
        let mut rng = fastrand::Rng::with_seed(1);
        for compressible in [false, true] {
            for len in [1, 100, 1_000] {
                assert_eq!(value(&mut rng, 3, 7, len, compressible).len(), len);
            }
        }
        assert_eq!(key(42).len(), 9);
    }
}
