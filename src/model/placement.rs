//! Where a pair belongs among a fixed number of slots: its shard among the operator's
//! shards, its chain among the audit topic's partitions. A stable hash (64-bit FNV-1a)
//! of `namespace/name`: the same in every process, version and platform.

/// Slot of `namespace/name` among `slots` (0 when there is one, or none).
pub fn shard_of(namespace: &str, name: &str, slots: u16) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(name.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(slots.max(1))) as u16
}
