//! Which partition a key belongs to, decided in one place: the identity stage sends each
//! profile's records to `for_key(profile id, partitions)` of `profile.resolved`, and control
//! asks the engine instance that owns that partition for the profile. The function is Kafka's
//! default partitioner (murmur2 of the key, positive, modulo the partition count), so Java
//! producers and Kafka Streams' interactive queries agree with it.
//!
//! `profile.sequence`, the identity owners' input, is partitioned by sandbox instead
//! ([`for_sandbox`]): an identity graph never spans two sandboxes, so every identity a link
//! could join is on the same partition, and each partition's owner can link without asking
//! another. The validate stage's intake, the engine's hand-backs, the identity stage's backfill
//! and control's identity lookups all place a sandbox with this one function.

/// Kafka's murmur2 (seed `0x9747b28c`), as its Java client computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (at least one).
pub fn for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    positive % partitions.max(1)
}

/// The key a sandbox is placed by: `org \0 sandbox` (an org id holds no NUL).
pub fn sandbox_key(org: &str, sandbox: &str) -> String {
    format!("{org}\0{sandbox}")
}

/// The partition of `profile.sequence` (of `partitions`) that holds the sandbox's identity
/// graph.
pub fn for_sandbox(org: &str, sandbox: &str, partitions: i32) -> i32 {
    for_key(sandbox_key(org, sandbox).as_bytes(), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // The values Kafka's own client tests (UtilsTest.testMurmur2) pin.
        for (input, expected) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
        ] {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for n in 1..8 {
            for key in ["a", "profile-1", "0123456789abcdef0123456789abcdef"] {
                let p = for_key(key.as_bytes(), n);
                assert!((0..n).contains(&p));
                assert_eq!(p, for_key(key.as_bytes(), n));
            }
        }
        assert_eq!(for_key(b"x", 0), 0);
    }

    #[test]
    fn sandboxes_spread_over_partitions_and_stay_put() {
        let placed: std::collections::BTreeSet<i32> = (0..32)
            .map(|i| for_sandbox("acme", &format!("sb{i}"), 4))
            .collect();
        assert!(placed.len() > 1, "32 sandboxes all on one of 4 partitions");
        assert_eq!(for_sandbox("acme", "prod", 1), 0);
        assert_eq!(
            for_sandbox("acme", "prod", 4),
            for_key(b"acme\0prod", 4),
            "one key for a sandbox wherever it is placed"
        );
        assert_ne!(sandbox_key("ac", "meprod"), sandbox_key("acme", "prod"));
    }
}
