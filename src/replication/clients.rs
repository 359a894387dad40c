//! Kafka clients shared by every pipeline with the same client settings.
//!
//! Each librdkafka client costs a main thread, a thread and a connection per broker, and
//! for a producer a polling thread; a fleet of pairs with a few clients each runs
//! thousands of threads. The clients whose use is the same for every pair are shared by
//! all pipelines whose settings (bootstrap servers, SASL/TLS, tuning) are equal:
//! - the end-offsets reader (ListOffsets and metadata; no group, no assignment);
//! - the DLQ producer (poison records, rare; each record names its pair's DLQ topic).
//!
//! The source's producer (purged on a fence, which acts on a whole client) and the sink's
//! consumer (its pair's group and assignment) stay each pipeline's own.
//!
//! A shared client lives as long as a pipeline holds it: the registry keeps only weak
//! references, so the last pipeline to stop closes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rdkafka::ClientConfig;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaResult;

use crate::replication::producer::Producer;

/// A client's settings, in a stable order (the registry's key; never printed).
type Key = BTreeMap<String, String>;

struct Registry<T> {
    clients: Mutex<HashMap<Key, Weak<T>>>,
}

impl<T: FromClientConfig> Registry<T> {
    fn new() -> Self {
        Registry {
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The live client with these settings, or a new one.
    fn get(&self, cfg: &ClientConfig) -> KafkaResult<Arc<T>> {
        let key: Key = cfg
            .config_map()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        clients.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(T::from_config(cfg)?);
        clients.insert(key, Arc::downgrade(&c));
        Ok(c)
    }

    fn live(&self) -> usize {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.values().filter(|w| w.strong_count() > 0).count()
    }
}

fn readers() -> &'static Registry<BaseConsumer> {
    static R: OnceLock<Registry<BaseConsumer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

fn dlq_producers() -> &'static Registry<Producer> {
    static R: OnceLock<Registry<Producer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// The end-offsets reader for clients configured as `cfg` (see the module's documentation).
pub fn offsets_reader(cfg: &ClientConfig) -> KafkaResult<Arc<BaseConsumer>> {
    readers().get(cfg)
}

/// The DLQ producer for clients configured as `cfg`.
pub fn dlq_producer(cfg: &ClientConfig) -> KafkaResult<Arc<Producer>> {
    dlq_producers().get(cfg)
}

/// Shared clients alive now (readers, DLQ producers).
pub fn live() -> (usize, usize) {
    (readers().live(), dlq_producers().live())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Nothing listens there: creating a client does not connect.
        c.set("bootstrap.servers", bootstrap);
        c
    }

    #[test]
    fn equal_settings_share_one_client_and_the_last_holder_closes_it() {
        let reg: Registry<BaseConsumer> = Registry::new();
        let a = reg.get(&cfg("127.0.0.1:1")).unwrap();
        let b = reg.get(&cfg("127.0.0.1:1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "equal settings, one client");
        let other = reg.get(&cfg("127.0.0.1:2")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other), "other settings, another client");
        assert_eq!(reg.live(), 2);
        drop(a);
        assert_eq!(reg.live(), 2, "still held by the second pipeline");
        drop(b);
        assert_eq!(reg.live(), 1, "closed with its last holder");
        let again = reg.get(&cfg("127.0.0.1:1")).unwrap();
        assert_eq!(reg.live(), 2);
        drop((again, other));
        assert_eq!(reg.live(), 0);
    }

    #[test]
    fn settings_differing_in_one_property_do_not_share() {
        let reg: Registry<Producer> = Registry::new();
        let mut tuned = cfg("127.0.0.1:1");
        tuned.set("linger.ms", "50");
        let a = reg.get(&cfg("127.0.0.1:1")).unwrap();
        let b = reg.get(&tuned).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_refused_setting_is_an_error_not_a_shared_client() {
        let reg: Registry<BaseConsumer> = Registry::new();
        let mut bad = cfg("127.0.0.1:1");
        bad.set("no.such.property", "1");
        assert!(reg.get(&bad).is_err());
        assert_eq!(reg.live(), 0);
    }
}
