//! Kubernetes controllers: the AccountPair controller (replication, detection, status),
//! the Switchover executor and the Drill runner, all acting only while this replica holds
//! the Lease.

pub mod conditions;
pub mod leader;
pub mod secrets;
