//! Kubernetes Events published in the background, through one bounded queue.
//!
//! A decision or a flip never waits for an Event: it hands the Event over and goes on.
//! The queue holds at most [`CAPACITY`] Events; [`PUBLISHERS`] of them are sent to the
//! API server at once, in the order they were handed over. With the queue full (an API
//! server answering slowly while many pairs' verdicts change) a new Event is dropped and
//! counted (`understudy_events_dropped_total`): the audit trail, the pair's conditions
//! and the notifications still record what happened. Before this queue each Event was a
//! task of its own: a 1,000-pair bench under load piled up 16,677 of them (27 MB).

use std::future::Future;

use futures::StreamExt;
use tokio::sync::mpsc;

/// Events waiting to be published, operator-wide, before new ones are dropped: a
/// thousand pairs starting at once each publish one and fit.
pub const CAPACITY: usize = 4096;
/// Events sent to the API server at once.
pub const PUBLISHERS: usize = 8;

/// The handle call sites offer Events to.
#[derive(Clone)]
pub struct EventQueue<T> {
    tx: mpsc::Sender<T>,
}

impl<T: Send + 'static> EventQueue<T> {
    /// Starts the task that publishes what is offered, `publishers` at a time, with
    /// `publish`. It ends when every handle is gone and the queue is empty. Must run
    /// within a Tokio runtime.
    pub fn start<F, Fut>(capacity: usize, publishers: usize, publish: F) -> Self
    where
        F: Fn(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<T>(capacity.max(1));
        let queued = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        tokio::spawn(queued.for_each_concurrent(publishers.max(1), publish));
        EventQueue { tx }
    }

    /// Queues `item` for publishing; false, counted as a dropped Event, when the queue
    /// is full.
    pub fn offer(&self, item: T) -> bool {
        let queued = self.tx.try_send(item).is_ok();
        if !queued {
            super::metrics::metrics().events_dropped_total.inc();
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn a_slow_api_server_fills_the_queue_then_events_are_dropped_and_counted() {
        let published = Arc::new(Mutex::new(Vec::new()));
        // The API server answers nothing until the gate opens.
        let gate = Arc::new(Semaphore::new(0));
        let (p, g) = (published.clone(), gate.clone());
        let q = EventQueue::start(3, 1, move |n: u32| {
            let (p, g) = (p.clone(), g.clone());
            async move {
                g.acquire().await.unwrap().forget();
                p.lock().unwrap().push(n);
            }
        });
        let dropped = || {
            crate::controller::metrics::metrics()
                .events_dropped_total
                .get()
        };
        // One is being published (waiting on the gate), three wait in the queue.
        assert!(q.offer(0));
        tokio::time::timeout(Duration::from_secs(5), async {
            while q.tx.capacity() < 3 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the publisher takes the first Event");
        for n in 1..=3 {
            assert!(q.offer(n), "Event {n} is queued");
        }
        let before = dropped();
        assert!(!q.offer(4), "a full queue drops the Event");
        assert!(dropped() > before, "and counts it");
        // The API server answers again: everything queued is published, in order.
        gate.add_permits(10);
        tokio::time::timeout(Duration::from_secs(5), async {
            while published.lock().unwrap().len() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the queued Events are published");
        assert_eq!(*published.lock().unwrap(), vec![0, 1, 2, 3]);
        assert!(q.offer(5), "room again once published");
    }
}
