//! A DNS record as a `TrafficTarget`. The compare-and-swap is the RFC 2136 prerequisite
//! (`dns::DnsRecord::ensure_values`) sent to the first listed server; `observe` and
//! `verify_side` ask every listed server, so a record that the first server changed but
//! a second does not serve yet is reported server by server, never as "not moved".

use std::time::Duration;

use async_trait::async_trait;

use crate::api::Side;
use crate::traffic::dns::{self, DnsError, DnsRecord, Ensured, ServerAnswer};
use crate::traffic::target::{Moved, TargetState, TrafficError, TrafficTarget, conflict_message};

/// A DNS record with the values each side serves.
pub struct DnsTarget {
    pub record: DnsRecord,
    pub primary: Vec<String>,
    pub standby: Vec<String>,
}

/// The two sides' values, canonical, and the words for a set of values.
struct Sides {
    primary: Vec<String>,
    standby: Vec<String>,
}

impl Sides {
    fn side_of(&self, values: &[String]) -> Option<Side> {
        if values == self.primary.as_slice() {
            Some(Side::Primary)
        } else if values == self.standby.as_slice() {
            Some(Side::Standby)
        } else {
            None
        }
    }

    fn values(&self, side: Side) -> &[String] {
        match side {
            Side::Primary => &self.primary,
            Side::Standby => &self.standby,
        }
    }

    /// `10.2.0.1 (standby)`, `10.9.9.9 (neither side's)`, `no such record (neither side's)`.
    fn label(&self, values: &[String]) -> String {
        let text = if values.is_empty() {
            "no such record".to_string()
        } else {
            values.join(", ")
        };
        match self.side_of(values) {
            Some(side) => format!("{text} ({side})"),
            None => format!("{text} (neither side's)"),
        }
    }

    fn plain(values: &[String]) -> String {
        if values.is_empty() {
            "no such record".into()
        } else {
            values.join(", ")
        }
    }

    /// What the servers answer, as a state; Err (with every server's answer) when a
    /// server did not answer, because then nobody can say where the record points.
    fn classify(&self, answers: &[ServerAnswer]) -> Result<TargetState, String> {
        if answers.iter().any(|a| a.answer.is_err()) {
            return Err(format!(
                "not every server answered: {}",
                dns::describe_answers_with(answers, |v| self.label(v))
            ));
        }
        let first = answers
            .first()
            .and_then(|a| a.answer.as_ref().ok())
            .cloned()
            .unwrap_or_default();
        let agree = answers
            .iter()
            .all(|a| a.answer.as_ref().ok() == Some(&first));
        if !agree {
            // Servers disagree: the record is moving (or was changed on one server).
            return Ok(TargetState::Neither {
                holds: format!(
                    "servers disagree: {}",
                    dns::describe_answers_with(answers, |v| self.label(v))
                ),
            });
        }
        let holds = if answers.len() > 1 {
            format!("every server answers {}", Self::plain(&first))
        } else {
            format!("answers {}", Self::plain(&first))
        };
        Ok(match self.side_of(&first) {
            Some(side) => TargetState::On { side, holds },
            None => TargetState::Neither { holds },
        })
    }
}

impl DnsTarget {
    fn values(&self, side: Side) -> &[String] {
        match side {
            Side::Primary => &self.primary,
            Side::Standby => &self.standby,
        }
    }

    fn sides(&self) -> Result<Sides, TrafficError> {
        Ok(Sides {
            primary: dns::canonical(self.record.rtype, &self.primary).map_err(|e| self.err(e))?,
            standby: dns::canonical(self.record.rtype, &self.standby).map_err(|e| self.err(e))?,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> TrafficError {
        TrafficError::Failed {
            target: self.describe(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl TrafficTarget for DnsTarget {
    fn describe(&self) -> String {
        format!("dns {} {}", self.record.name, self.record.rtype)
    }

    async fn observe(&self) -> Result<TargetState, TrafficError> {
        let sides = self.sides()?;
        let answers = self.record.query_all().await;
        sides.classify(&answers).map_err(|e| self.err(e))
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        match self
            .record
            .ensure_values(self.values(from), self.values(to))
            .await
        {
            Ok(Ensured::Changed) => Ok(Moved::Changed),
            Ok(Ensured::AlreadyThere) => Ok(Moved::AlreadyThere),
            Err(DnsError::PrerequisiteFailed { found, .. }) => {
                let sides = self.sides()?;
                let state = TargetState::Neither {
                    holds: format!("{} on {}", Sides::plain(&found), self.record.servers[0]),
                };
                Err(TrafficError::Conflict {
                    target: self.describe(),
                    message: conflict_message(
                        &state,
                        (from, &Sides::plain(sides.values(from))),
                        (to, &Sides::plain(sides.values(to))),
                    ),
                })
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        match self.record.verify_values(self.values(side), within).await {
            Ok(()) => Ok(()),
            Err(DnsError::NotVerified {
                answers, waited, ..
            }) => {
                let sides = self.sides()?;
                Err(self.err(format!(
                    "not every server answers {} within {:.1?}: {}",
                    sides.label(sides.values(side)),
                    waited,
                    dns::describe_answers_with(&answers, |v| sides.label(v))
                )))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn applied(&self) -> String {
        format!("UPDATE applied via {}", self.record.servers[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides() -> Sides {
        Sides {
            primary: vec!["10.1.0.1".into()],
            standby: vec!["10.2.0.1".into()],
        }
    }

    fn answer(server: &str, a: Result<&[&str], &str>) -> ServerAnswer {
        ServerAnswer {
            server: server.parse().unwrap(),
            answer: a
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .map_err(str::to_string),
        }
    }

    #[test]
    fn every_server_agreeing_on_a_sides_values_is_that_side() {
        let s = sides().classify(&[
            answer("127.0.0.1:53", Ok(&["10.2.0.1"])),
            answer("127.0.0.2:53", Ok(&["10.2.0.1"])),
        ]);
        assert_eq!(
            s,
            Ok(TargetState::On {
                side: Side::Standby,
                holds: "every server answers 10.2.0.1".into()
            })
        );
    }

    #[test]
    fn a_hand_made_value_is_neither_side_and_named() {
        let s = sides()
            .classify(&[answer("127.0.0.1:53", Ok(&["10.9.9.9"]))])
            .unwrap();
        assert_eq!(s.side(), None);
        assert_eq!(s.holds(), "answers 10.9.9.9");
    }

    #[test]
    fn servers_that_disagree_are_named_one_by_one() {
        let s = sides()
            .classify(&[
                answer("127.0.0.1:53", Ok(&["10.2.0.1"])),
                answer("127.0.0.2:53", Ok(&["10.1.0.1"])),
            ])
            .unwrap();
        assert_eq!(s.side(), None);
        assert_eq!(
            s.holds(),
            "servers disagree: 127.0.0.1:53 answers 10.2.0.1 (standby); 127.0.0.2:53 answers 10.1.0.1 (primary)"
        );
    }

    #[test]
    fn a_server_that_does_not_answer_makes_the_state_unknown_not_neither() {
        let e = sides()
            .classify(&[
                answer("127.0.0.1:53", Ok(&["10.2.0.1"])),
                answer("127.0.0.1:1", Err("connection refused")),
            ])
            .unwrap_err();
        assert_eq!(
            e,
            "not every server answered: 127.0.0.1:53 answers 10.2.0.1 (standby); 127.0.0.1:1 did not answer (connection refused)"
        );
    }

    #[test]
    fn an_absent_record_reads_as_no_such_record() {
        let s = sides()
            .classify(&[answer("127.0.0.1:53", Ok(&[]))])
            .unwrap();
        assert_eq!(s.holds(), "answers no such record");
        assert_eq!(sides().label(&[]), "no such record (neither side's)");
    }
}
