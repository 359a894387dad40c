//! How often a position is written: the source's checkpoint (a record on the checkpoint
//! topic) and the sink's committed offsets (an OffsetCommit to the group coordinator).
//!
//! Both only shorten what a restart reads again (duplicates of full states, never a
//! loss): a stop, a fence and a reverse write their final position whatever this says.
//! Written at every tick they would cost Kafka one request per pair and tick while a
//! pair moves at all: a thousand pairs changing once a second each made as many
//! checkpoint writes and offset commits as changes, on the broker the changes themselves
//! need. So a position that moves slowly is written every [`SLOW_TICKS`] ticks, and one
//! that moves fast (a backlog, a bootstrap) at every tick, as before.

use std::time::Duration;

/// Records past the last written position that make it due at the next tick.
pub const BUSY_RECORDS: u64 = 1_000;
/// Ticks after which a position that moved at all is written.
pub const SLOW_TICKS: u32 = 10;

/// Whether a position `records` past the last one written, which was written `since`
/// ago, is written at this tick of `tick`: never when it did not move; at once when
/// [`BUSY_RECORDS`] moved past it; otherwise once [`SLOW_TICKS`] ticks have passed.
pub fn position_write_due(records: u64, since: Duration, tick: Duration) -> bool {
    records > 0 && (records >= BUSY_RECORDS || since >= tick * SLOW_TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_position_waits_ten_ticks_a_busy_one_none_an_unmoved_one_for_ever() {
        let tick = Duration::from_millis(500);
        // One change a second: written every 5 s, not every second.
        assert!(!position_write_due(1, tick, tick));
        assert!(!position_write_due(4, Duration::from_millis(4_999), tick));
        assert!(position_write_due(5, Duration::from_secs(5), tick));
        // A backlog or a bootstrap: at every tick.
        assert!(position_write_due(1_000, tick, tick));
        assert!(position_write_due(25_000, Duration::ZERO, tick));
        // Nothing moved: nothing to write, however long ago.
        assert!(!position_write_due(0, Duration::from_secs(3600), tick));
    }
}
