//! HAProxy load-balancer flips over the runtime API (a TCP stats socket at `level
//! admin`): `set server <backend>/<server> state ready|maint`, then `show servers state`
//! read back to verify. The new active server is made ready before the old one is put
//! in maintenance, so the backend is never left without a server.
//!
//! Backend and server names are written into those commands, where `;` chains another
//! command and a space adds an argument: a name with any character HAProxy does not
//! allow in names is refused before anything is sent (the CRD refuses it first).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What went wrong talking to HAProxy.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    #[error("cannot reach the HAProxy runtime API at {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("HAProxy runtime API at {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    #[error(
        "HAProxy backend {backend} has no server {server} (check the backend and server names)"
    )]
    NoSuchServer { backend: String, server: String },
    #[error("after the flip HAProxy reports {backend}/{server} as {found}, expected {expected}")]
    NotApplied {
        backend: String,
        server: String,
        found: String,
        expected: String,
    },
    #[error("unexpected answer from HAProxy to `{command}`: {answer}")]
    Unexpected { command: String, answer: String },
    #[error(
        "HAProxy {what} name {name:?} holds a character HAProxy does not allow in names (only letters, digits, '-', '_', '.' and ':'); nothing was sent to HAProxy"
    )]
    InvalidName { what: &'static str, name: String },
}

/// Whether `name` is a valid HAProxy proxy or server name: letters, digits, '-', '_',
/// '.' and ':' (HAProxy configuration manual, section 4), the same set the CRD's rule
/// `HAPROXY_NAME_PATTERN` allows.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn check_name(what: &'static str, name: &str) -> Result<(), HaproxyError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(HaproxyError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// Administrative state of one server as HAProxy reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerAdminState {
    Ready,
    Drain,
    Maint,
}

impl std::fmt::Display for ServerAdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerAdminState::Ready => "ready",
            ServerAdminState::Drain => "drain",
            ServerAdminState::Maint => "maint",
        })
    }
}

/// Client of one HAProxy runtime API.
#[derive(Clone, Debug)]
pub struct HaproxyRuntime {
    pub addr: String,
    pub timeout: Duration,
}

impl HaproxyRuntime {
    pub fn new(addr: impl Into<String>) -> Self {
        HaproxyRuntime {
            addr: addr.into(),
            timeout: Duration::from_secs(3),
        }
    }

    /// Send one command (non-interactive mode: HAProxy answers and closes).
    pub async fn command(&self, command: &str) -> Result<String, HaproxyError> {
        let io = async {
            let mut stream =
                TcpStream::connect(&self.addr)
                    .await
                    .map_err(|e| HaproxyError::Connect {
                        addr: self.addr.clone(),
                        detail: e.to_string(),
                    })?;
            stream
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(|e| HaproxyError::Connect {
                    addr: self.addr.clone(),
                    detail: e.to_string(),
                })?;
            let mut answer = String::new();
            stream
                .read_to_string(&mut answer)
                .await
                .map_err(|e| HaproxyError::Connect {
                    addr: self.addr.clone(),
                    detail: e.to_string(),
                })?;
            Ok(answer)
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| HaproxyError::Timeout {
                addr: self.addr.clone(),
                timeout: self.timeout,
            })?
    }

    /// Admin state of every server of `backend`, by server name.
    pub async fn server_states(
        &self,
        backend: &str,
    ) -> Result<Vec<(String, ServerAdminState)>, HaproxyError> {
        check_name("backend", backend)?;
        let command = format!("show servers state {backend}");
        let answer = self.command(&command).await?;
        parse_servers_state(&command, backend, &answer)
    }

    /// State of one server.
    pub async fn server_state(
        &self,
        backend: &str,
        server: &str,
    ) -> Result<ServerAdminState, HaproxyError> {
        self.server_states(backend)
            .await?
            .into_iter()
            .find(|(name, _)| name == server)
            .map(|(_, s)| s)
            .ok_or_else(|| HaproxyError::NoSuchServer {
                backend: backend.into(),
                server: server.into(),
            })
    }

    /// Set one server's admin state (idempotent: setting the current state is success).
    pub async fn set_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerAdminState,
    ) -> Result<(), HaproxyError> {
        check_name("backend", backend)?;
        check_name("server", server)?;
        let command = format!("set server {backend}/{server} state {state}");
        let answer = self.command(&command).await?;
        let trimmed = answer.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        if trimmed.contains("No such server") || trimmed.contains("No such backend") {
            return Err(HaproxyError::NoSuchServer {
                backend: backend.into(),
                server: server.into(),
            });
        }
        Err(HaproxyError::Refused {
            command,
            answer: trimmed.to_string(),
        })
    }

    /// Make `active` the serving server and `passive` maintenance, then read both back.
    pub async fn ensure_active(
        &self,
        backend: &str,
        active: &str,
        passive: &str,
    ) -> Result<(), HaproxyError> {
        self.set_state(backend, active, ServerAdminState::Ready)
            .await?;
        self.set_state(backend, passive, ServerAdminState::Maint)
            .await?;
        self.verify_active(backend, active, passive).await
    }

    /// Check that `active` is ready and `passive` in maintenance.
    pub async fn verify_active(
        &self,
        backend: &str,
        active: &str,
        passive: &str,
    ) -> Result<(), HaproxyError> {
        let states = self.server_states(backend).await?;
        for (server, expected) in [
            (active, ServerAdminState::Ready),
            (passive, ServerAdminState::Maint),
        ] {
            let found = states
                .iter()
                .find(|(name, _)| name == server)
                .map(|(_, s)| *s)
                .ok_or_else(|| HaproxyError::NoSuchServer {
                    backend: backend.into(),
                    server: server.into(),
                })?;
            if found != expected {
                return Err(HaproxyError::NotApplied {
                    backend: backend.into(),
                    server: server.into(),
                    found: found.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        Ok(())
    }
}

// srv_admin_state bits (haproxy include/haproxy/server-t.h). CMAINT (0x04, "disabled"
// in the configuration) stays set after `set server … state ready`, so it is not part
// of the maintenance mask (SRV_ADMF_MAINT = FMAINT | IMAINT | RMAINT).
const ADMF_FMAINT: u32 = 0x01;
const ADMF_IMAINT: u32 = 0x02;
const ADMF_FDRAIN: u32 = 0x08;
const ADMF_IDRAIN: u32 = 0x10;
const ADMF_RMAINT: u32 = 0x20;

/// Parse `show servers state <backend>` (format version 1):
/// `be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state …`.
fn parse_servers_state(
    command: &str,
    backend: &str,
    answer: &str,
) -> Result<Vec<(String, ServerAdminState)>, HaproxyError> {
    let unexpected = || HaproxyError::Unexpected {
        command: command.into(),
        answer: answer.trim().chars().take(300).collect(),
    };
    let mut lines = answer.lines();
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(l) if l.contains("Can't find backend") || l.contains("No such backend") => {
            return Err(HaproxyError::NoSuchServer {
                backend: backend.into(),
                server: "*".into(),
            });
        }
        _ => return Err(unexpected()),
    }
    let mut out = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 7 {
            return Err(unexpected());
        }
        if fields[1] != backend {
            continue;
        }
        let admin: u32 = fields[6].parse().map_err(|_| unexpected())?;
        let state = if admin & (ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT) != 0 {
            ServerAdminState::Maint
        } else if admin & (ADMF_FDRAIN | ADMF_IDRAIN) != 0 {
            ServerAdminState::Drain
        } else {
            ServerAdminState::Ready
        };
        out.push((fields[3].to_string(), state));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 app 1 primary 127.0.0.1 2 0 1 1 12 1 0 2 0 0 0 0 - 40001 - 0 0 - - 0\n3 app 2 standby 127.0.0.1 0 5 1 1 12 1 0 0 0 0 0 0 - 40002 - 0 0 - - 0\n3 app 3 other 127.0.0.1 2 8 1 1 12 1 0 0 0 0 0 0 - 40003 - 0 0 - - 0\n3 app 4 spare 127.0.0.1 2 4 1 1 12 1 0 0 0 0 0 0 - 40004 - 0 0 - - 0\n\n";

    #[test]
    fn parses_admin_states() {
        let states = parse_servers_state("show servers state app", "app", SAMPLE).unwrap();
        assert_eq!(
            states,
            vec![
                ("primary".to_string(), ServerAdminState::Ready),
                ("standby".to_string(), ServerAdminState::Maint),
                ("other".to_string(), ServerAdminState::Drain),
                // configured `disabled` (CMAINT) but set ready at run time
                ("spare".to_string(), ServerAdminState::Ready),
            ]
        );
    }

    #[test]
    fn unknown_backend_is_a_named_error() {
        let err = parse_servers_state("show servers state nope", "nope", "Can't find backend.\n")
            .unwrap_err();
        assert!(matches!(err, HaproxyError::NoSuchServer { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_name_that_would_chain_a_command_is_refused_before_anything_is_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let rt = HaproxyRuntime::new(listener.local_addr().unwrap().to_string());
        for (backend, server) in [
            ("app;shutdown sessions server app/primary", "primary"),
            ("app", "primary state maint;set server app/standby"),
            ("app", "a b"),
            ("", "primary"),
        ] {
            let err = rt
                .set_state(backend, server, ServerAdminState::Ready)
                .await
                .unwrap_err();
            assert!(matches!(err, HaproxyError::InvalidName { .. }), "{err}");
            assert!(err.to_string().contains("nothing was sent"), "{err}");
        }
        let err = rt
            .server_states("app;disable frontend web")
            .await
            .unwrap_err();
        assert!(matches!(err, HaproxyError::InvalidName { .. }), "{err}");
        // A connection would be complete (queued on the listener) before a command is
        // written; there is none.
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "no connection was made to the runtime API"
        );
    }

    #[test]
    fn garbage_is_unexpected_not_a_panic() {
        let err = parse_servers_state("x", "app", "1\n3 app\n").unwrap_err();
        assert!(matches!(err, HaproxyError::Unexpected { .. }));
        assert!(parse_servers_state("x", "app", "").is_err());
    }
}
