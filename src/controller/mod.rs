//! Kubernetes controllers: the AccountPair controller (replication, detection, status),
//! the Switchover executor and the notice webhook, all acting only while this replica
//! holds the Lease.

pub mod account_pair;
pub mod agora_hook;
pub mod budget;
pub mod claim;
pub mod conditions;
pub mod context;
pub mod drill;
pub mod election;
pub mod env;
pub mod event_queue;
pub mod executor_glue;
pub mod failback;
pub mod guard;
pub mod leader;
pub mod metrics;
pub mod notices;
pub mod notifications;
pub mod pair;
pub mod run;
pub mod secrets;
pub mod shard_watch;
pub mod shards;
pub mod status;
pub mod status_budget;
pub mod status_pace;
pub mod switchover;
pub mod targets;
pub mod wecom_hook;
