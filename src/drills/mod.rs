//! Scheduled DR drills: prove, record by record, that the standby and the Kafka copy
//! hold the primary's data, and optionally rehearse a flip of the drill's own traffic.
//!
//! Contract:
//! - [`schedule`] (pure) decides which slot is due, names its Drill object and prunes
//!   history; missed slots are never replayed.
//! - [`rehearsal`] (pure) decides which traffic a rehearsal may flip: only the drill's
//!   own, never a production record or target.
//! - [`join`] (pure) is the merge-join of two key-sorted streams; [`verify`] drives it
//!   over both accounts' paged listings in memory independent of the number of
//!   entities, then re-checks the differences after replication has settled.
//! - [`kafka_copy`] compares the compacted state topic, read up to the end offsets
//!   captured at its start, with the primary.
//! - [`runner`] runs one drill through its phases and reports to a status sink and the
//!   metrics; [`report`] (pure) renders a finished Drill for people and machines.
//!
//! "Primary" and "standby" here mean the **active** and the **passive** account of the
//! pair at the time of the drill: after a failover the controller passes them swapped.

pub mod apart;
pub mod join;
pub mod kafka_copy;
pub mod recheck;
pub mod rehearsal;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod verify;

pub use join::{DiffKind, Difference, Tally};
pub use kafka_copy::{
    KafkaCopyConfig, KafkaCopyError, KafkaCopyOutcome, check_kafka_copy, live_state,
};
pub use recheck::{AtRest, Settle};
pub use rehearsal::rehearsal_traffic;
pub use report::{render_json, render_text};
pub use runner::{CopyCheck, DrillInputs, DrillStatusSink, Rehearsal, run_drill};
pub use schedule::{ScheduleError, SlotPlan, due_slot, history_to_delete, plan, slot_name};
pub use verify::{
    DigestSource, KeyDigest, Listing, VerifyError, VerifyOptions, VerifyOutcome, verify_accounts,
    verify_with,
};
