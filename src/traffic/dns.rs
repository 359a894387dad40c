//! DNS flips by RFC 2136 dynamic UPDATE, TSIG-signed, as a compare-and-swap: the UPDATE
//! carries a value-dependent prerequisite (RFC 2136 §2.4.2) that the RRset still holds the
//! old side's values, so a stale or rival writer cannot undo a flip and a record changed
//! by hand is never overwritten silently.
//!
//! `ensure_values` is idempotent: a record already holding the target values is success
//! without a write; a refused prerequisite is re-read to tell "already flipped" (a
//! resumed run) from "changed by someone else". `verify_values` queries every listed
//! authoritative server until each answers the target values.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::xfer::DnsResponse;

use crate::api::account_pair::RecordType as SpecRecordType;

/// What went wrong with a DNS flip, in words that say what happened at the server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid DNS setting: {0}")]
    Invalid(String),
    #[error(
        "the record {name} {rtype} was changed by someone else: it holds {found:?}, expected {expected:?} (the compare-and-swap prerequisite failed); check who edited it, then retry or flip by hand"
    )]
    PrerequisiteFailed {
        name: String,
        rtype: String,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error(
        "server {server} REFUSED the update of zone {zone}: the key may not update this zone or name (check update-policy)"
    )]
    Refused { server: SocketAddr, zone: String },
    #[error(
        "server {server} answered NOTAUTH for zone {zone}: it is not authoritative for the zone, or it rejected the TSIG key ({detail})"
    )]
    NotAuth {
        server: SocketAddr,
        zone: String,
        detail: String,
    },
    #[error(
        "server {server} rejected the TSIG signature (BADSIG/BADKEY): the key name, algorithm or secret does not match the server's; check the TSIG Secret"
    )]
    BadSig { server: SocketAddr },
    #[error("server {server} answered {rcode} to the update of {name}")]
    Rcode {
        server: SocketAddr,
        name: String,
        rcode: String,
    },
    #[error("server {server} did not answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("DNS exchange with {server} failed: {detail}")]
    Exchange { server: SocketAddr, detail: String },
    #[error("not every server answers {expected:?} for {name} within {waited:?}: {}", describe_answers(.answers))]
    NotVerified {
        name: String,
        expected: Vec<String>,
        /// What each listed server answered last, in the order of the spec.
        answers: Vec<ServerAnswer>,
        waited: Duration,
    },
}

/// What one server answered: its values (canonical, sorted; empty when the record is
/// absent), or why it did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAnswer {
    pub server: SocketAddr,
    pub answer: Result<Vec<String>, String>,
}

/// `127.0.0.1:53 answers 10.0.0.2; 127.0.0.1:54 did not answer (…)`.
pub fn describe_answers(answers: &[ServerAnswer]) -> String {
    describe_answers_with(answers, |v| {
        if v.is_empty() {
            "no such record".into()
        } else {
            v.join(", ")
        }
    })
}

/// Like `describe_answers`, with the caller's words for a set of values (e.g. naming
/// the side they belong to).
pub fn describe_answers_with(
    answers: &[ServerAnswer],
    values: impl Fn(&[String]) -> String,
) -> String {
    answers
        .iter()
        .map(|a| match &a.answer {
            Ok(v) => format!("{} answers {}", a.server, values(v)),
            Err(e) => format!("{} did not answer ({e})", a.server),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A TSIG key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    fn signer(&self) -> Result<TSigner, DnsError> {
        let algorithm = match self.algorithm.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(DnsError::Invalid(format!(
                    "TSIG algorithm {other:?} is not supported; use hmac-sha256"
                )));
            }
        };
        let name = Name::from_str(&self.name)
            .map_err(|e| DnsError::Invalid(format!("TSIG key name {:?}: {e}", self.name)))?;
        TSigner::new(self.secret.clone(), algorithm, name, 300)
            .map_err(|e| DnsError::Invalid(format!("TSIG key {:?}: {e}", self.name)))
    }
}

/// One record managed by RFC 2136 updates.
#[derive(Clone, Debug)]
pub struct DnsRecord {
    pub servers: Vec<SocketAddr>,
    pub zone: Name,
    pub name: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub key: TsigKey,
    /// Per-exchange timeout.
    pub timeout: Duration,
}

/// Result of an `ensure_values`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The UPDATE was applied now.
    Changed,
    /// The record already held the target values (e.g. a resumed run).
    AlreadyThere,
}

impl DnsRecord {
    /// Build from the spec's fields. `name` may be relative to `zone`.
    pub fn new(
        servers: &[String],
        zone: &str,
        name: &str,
        rtype: SpecRecordType,
        ttl: u32,
        key: TsigKey,
    ) -> Result<Self, DnsError> {
        let servers = servers
            .iter()
            .map(|s| parse_server(s))
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(DnsError::Invalid(
                "at least one DNS server is needed".into(),
            ));
        }
        let zone = fqdn(zone)?;
        let name = if name.ends_with('.') {
            fqdn(name)?
        } else {
            fqdn(&format!("{name}.{zone}"))?
        };
        if !zone.zone_of(&name) {
            return Err(DnsError::Invalid(format!(
                "record {name} is not inside zone {zone}"
            )));
        }
        let rtype = match rtype {
            SpecRecordType::A => RecordType::A,
            SpecRecordType::AAAA => RecordType::AAAA,
            SpecRecordType::CNAME => RecordType::CNAME,
        };
        Ok(DnsRecord {
            servers,
            zone,
            name,
            rtype,
            ttl,
            key,
            timeout: Duration::from_secs(5),
        })
    }

    /// The values the first server (the one UPDATEs go to) answers now.
    pub async fn current_values(&self) -> Result<Vec<String>, DnsError> {
        self.query(self.servers[0]).await
    }

    /// What every listed server answers now, queried concurrently (read-only).
    pub async fn query_all(&self) -> Vec<ServerAnswer> {
        futures::future::join_all(self.servers.iter().map(|&server| async move {
            ServerAnswer {
                server,
                answer: self.query(server).await.map_err(|e| why_no_answer(&e)),
            }
        }))
        .await
    }

    /// Query one server for the record's values (canonical, sorted; empty when absent).
    pub async fn query(&self, server: SocketAddr) -> Result<Vec<String>, DnsError> {
        let mut client = connect(server, None, self.timeout).await?;
        let response = client
            .query(self.name.clone(), DNSClass::IN, self.rtype)
            .await
            .map_err(|e| exchange_error(server, self.timeout, e.to_string()))?;
        match response.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            other => {
                return Err(DnsError::Rcode {
                    server,
                    name: self.name.to_string(),
                    rcode: other.to_string(),
                });
            }
        }
        let mut values: Vec<String> = response
            .answers()
            .iter()
            .filter(|r| r.record_type() == self.rtype && r.name() == &self.name)
            .filter_map(|r| rdata_to_value(r.data()))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Make the record hold `to`, provided it holds exactly `from` now (compare-and-swap).
    pub async fn ensure_values(&self, from: &[String], to: &[String]) -> Result<Ensured, DnsError> {
        let from = canonical(self.rtype, from)?;
        let to = canonical(self.rtype, to)?;
        let server = self.servers[0];
        let current = self.query(server).await?;
        if current == to {
            return Ok(Ensured::AlreadyThere);
        }
        if current != from {
            return Err(self.prerequisite_failed(current, from));
        }
        let new = self.record_set(&to, self.ttl)?;
        let mut client = connect(server, Some(self.key.signer()?), self.timeout).await?;
        // An empty `from` means "the record must not exist yet" (RFC 2136 §2.4.3).
        let result = if from.is_empty() {
            client.create(new, self.zone.clone()).await
        } else {
            client
                .compare_and_swap(self.record_set(&from, 0)?, new, self.zone.clone())
                .await
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => return Err(self.classify_exchange_error(server, format!("{e:?}"))),
        };
        match response.response_code() {
            ResponseCode::NoError => Ok(Ensured::Changed),
            ResponseCode::NXRRSet | ResponseCode::YXRRSet => {
                // Someone wrote between our read and our update. Re-read: if the record
                // already holds the target values, a concurrent run of ours won.
                let now = self.query(server).await?;
                if now == to {
                    Ok(Ensured::AlreadyThere)
                } else {
                    Err(self.prerequisite_failed(now, from))
                }
            }
            ResponseCode::Refused => Err(DnsError::Refused {
                server,
                zone: self.zone.to_string(),
            }),
            ResponseCode::NotAuth => Err(self.not_auth(server, &response)),
            other => Err(DnsError::Rcode {
                server,
                name: self.name.to_string(),
                rcode: other.to_string(),
            }),
        }
    }

    /// Wait until every listed server answers `expected`, polling every 20 ms up to
    /// `within`. A server that does not answer is asked again until the bound; the error
    /// says what each server answered last.
    pub async fn verify_values(
        &self,
        expected: &[String],
        within: Duration,
    ) -> Result<(), DnsError> {
        let expected = canonical(self.rtype, expected)?;
        let started = tokio::time::Instant::now();
        let deadline = started + within;
        let mut last: Vec<Option<Result<Vec<String>, String>>> = vec![None; self.servers.len()];
        loop {
            let pending: Vec<usize> = (0..self.servers.len())
                .filter(|&i| last[i].as_ref() != Some(&Ok(expected.clone())))
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            // Each query is bounded by what is left of `within`, so a server that hangs
            // cannot stretch the bound.
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(50));
            let answers = futures::future::join_all(pending.iter().map(|&i| {
                let server = self.servers[i];
                async move {
                    let timeout = left.min(self.timeout);
                    match tokio::time::timeout(timeout, self.query(server)).await {
                        Ok(r) => r.map_err(|e| why_no_answer(&e)),
                        Err(_) => Err(why_no_answer(&DnsError::Timeout { server, timeout })),
                    }
                }
            }))
            .await;
            for (&i, a) in pending.iter().zip(answers) {
                last[i] = Some(a);
            }
            if last
                .iter()
                .all(|a| a.as_ref() == Some(&Ok(expected.clone())))
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DnsError::NotVerified {
                    name: self.name.to_string(),
                    expected,
                    answers: self
                        .servers
                        .iter()
                        .zip(last)
                        .map(|(&server, a)| ServerAnswer {
                            server,
                            answer: a.unwrap_or_else(|| Err("not asked".into())),
                        })
                        .collect(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn record_set(&self, values: &[String], ttl: u32) -> Result<RecordSet, DnsError> {
        let mut set = RecordSet::with_ttl(self.name.clone(), self.rtype, ttl);
        for v in values {
            set.insert(
                Record::from_rdata(self.name.clone(), ttl, value_to_rdata(self.rtype, v)?),
                0,
            );
        }
        Ok(set)
    }

    fn prerequisite_failed(&self, found: Vec<String>, expected: Vec<String>) -> DnsError {
        DnsError::PrerequisiteFailed {
            name: self.name.to_string(),
            rtype: self.rtype.to_string(),
            found,
            expected,
        }
    }

    fn not_auth(&self, server: SocketAddr, response: &DnsResponse) -> DnsError {
        // RFC 8945: a TSIG failure is answered NOTAUTH with the TSIG error in the TSIG RR.
        if response
            .signature()
            .iter()
            .any(|r| r.record_type() == RecordType::TSIG)
        {
            return DnsError::BadSig { server };
        }
        DnsError::NotAuth {
            server,
            zone: self.zone.to_string(),
            detail: "no TSIG error given".into(),
        }
    }

    fn classify_exchange_error(&self, server: SocketAddr, detail: String) -> DnsError {
        let lower = detail.to_ascii_lowercase();
        // BIND answers a request signed with an unknown key or a wrong secret with NOTAUTH
        // and a TSIG RR carrying BADKEY/BADSIG and an empty MAC; hickory's response
        // verification rejects that answer (it names TSIG/HMAC) before the rcode reaches
        // us. A server that accepted our key would have signed its answer with it.
        if lower.contains("tsig") || lower.contains("hmac") {
            return DnsError::BadSig { server };
        }
        exchange_error(server, self.timeout, detail)
    }
}

/// Why a server gave no usable answer, without repeating its address.
fn why_no_answer(e: &DnsError) -> String {
    match e {
        DnsError::Timeout { timeout, .. } => format!("no answer within {timeout:?}"),
        DnsError::Exchange { detail, .. } => detail.clone(),
        DnsError::Rcode { rcode, .. } => format!("answered {rcode}"),
        other => other.to_string(),
    }
}

fn exchange_error(server: SocketAddr, timeout: Duration, detail: String) -> DnsError {
    if detail.to_ascii_lowercase().contains("timed out")
        || detail.to_ascii_lowercase().contains("timeout")
    {
        DnsError::Timeout { server, timeout }
    } else {
        DnsError::Exchange { server, detail }
    }
}

async fn connect(
    server: SocketAddr,
    signer: Option<TSigner>,
    timeout: Duration,
) -> Result<Client, DnsError> {
    let (stream, handle) =
        TcpClientStream::new(server, None, Some(timeout), TokioRuntimeProvider::new());
    let signer = signer.map(|s| Arc::new(s) as Arc<dyn hickory_proto::op::MessageFinalizer>);
    let (client, background) = Client::with_timeout(stream, handle, timeout, signer)
        .await
        .map_err(|e| exchange_error(server, timeout, e.to_string()))?;
    tokio::spawn(background);
    Ok(client)
}

fn parse_server(s: &str) -> Result<SocketAddr, DnsError> {
    if let Ok(addr) = SocketAddr::from_str(s) {
        return Ok(addr);
    }
    IpAddr::from_str(s)
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            DnsError::Invalid(format!(
                "DNS server {s:?} must be an IP address with an optional :port"
            ))
        })
}

fn fqdn(s: &str) -> Result<Name, DnsError> {
    let mut name =
        Name::from_str(s).map_err(|e| DnsError::Invalid(format!("DNS name {s:?}: {e}")))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Canonical text of the given values for comparison: IP addresses normalised, names
/// lower-cased and fully qualified; sorted and deduplicated.
pub fn canonical(rtype: RecordType, values: &[String]) -> Result<Vec<String>, DnsError> {
    let mut out = values
        .iter()
        .map(|v| value_to_rdata(rtype, v).map(|rd| rdata_to_value(&rd).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn value_to_rdata(rtype: RecordType, v: &str) -> Result<RData, DnsError> {
    let bad = |what: &str| DnsError::Invalid(format!("{v:?} is not {what}"));
    match rtype {
        RecordType::A => v
            .parse()
            .map(|ip| RData::A(A(ip)))
            .map_err(|_| bad("an IPv4 address")),
        RecordType::AAAA => v
            .parse()
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| bad("an IPv6 address")),
        RecordType::CNAME => fqdn(v).map(|n| RData::CNAME(CNAME(n))),
        other => Err(DnsError::Invalid(format!(
            "record type {other} is not supported"
        ))),
    }
}

fn rdata_to_value(rdata: &RData) -> Option<String> {
    match rdata {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::CNAME(c) => Some(c.0.to_lowercase().to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
