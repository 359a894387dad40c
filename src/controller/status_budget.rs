//! An operator-wide bound on routine status writes in flight.
//!
//! A fleet of pairs that start together (the operator starting, a replica taking over
//! shards) all write their first status within a second or two: a thousand PATCHes at once
//! that the API server queues with everything else of the operator's, the Lease renewal
//! included. Measured at 1,000 pairs on two cores: 933 status PATCHes timed out together
//! and a Lease pass took 10.5 s, long enough for the claim to lapse and every pair to be
//! stopped and started again. So a pair's routine status write (its periodic publish)
//! takes one of [`MAX_IN_FLIGHT`] slots or is left for its next tick (500 ms later,
//! still due): the API server sees a bounded number of them at once. Writes that record a
//! decision (`persist`: the active side after a switchover, a brake) do not wait for a
//! slot.

use tokio::sync::{Semaphore, SemaphorePermit};

/// Routine status writes in flight operator-wide.
pub const MAX_IN_FLIGHT: usize = 8;

static SLOTS: Semaphore = Semaphore::const_new(MAX_IN_FLIGHT);

/// A slot for one routine status write, held until it is dropped; `None` when all are
/// taken (the write waits for the pair's next tick, and is counted as deferred).
pub fn slot() -> Option<SemaphorePermit<'static>> {
    let s = SLOTS.try_acquire().ok();
    if s.is_none() {
        crate::controller::metrics::metrics()
            .status_writes_deferred_total
            .inc();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_bound_is_in_flight_and_a_finished_write_frees_its_slot() {
        // Other tests of the process may hold slots meanwhile: take what is left.
        let held: Vec<_> = std::iter::from_fn(slot).take(MAX_IN_FLIGHT + 1).collect();
        assert!(held.len() <= MAX_IN_FLIGHT, "{} slots at once", held.len());
        assert!(slot().is_none(), "all taken: the next write waits");
        drop(held);
        assert!(slot().is_some(), "freed when the writes finish");
    }
}
