//! `understudy sim`: serves the Provider API simulator over HTTP until SIGTERM or
//! Ctrl-C.
//!
//! Contract: once the listener is bound, prints exactly one line
//! `listening on http://<addr>` to stdout (flushed; tests parse it, so `--listen
//! 127.0.0.1:0` works), then logs only to stderr. On a signal it stops accepting, lets
//! in-flight requests finish for up to 2 s (long-polls would otherwise hold it for a
//! minute), and exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::provider::sim::store::DEFAULT_RETENTION;
use crate::provider::sim::{ServerConfig, SimStore, seed_account};

/// How long in-flight requests may run on after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
#[command(
    about = "Run the Provider API simulator (in memory, many accounts)",
    long_about = "Serves the Provider API (src/provider/openapi.yaml, also at /openapi.yaml) for any \
number of in-memory accounts, plus an admin API under /admin/ to seed accounts, freeze, ban or \
unfreeze them, inject latency and failures, run loads of N changes a second, inject activity \
and send signed freeze notices to a webhook. It also serves the WeCom server API \
(/cgi-bin/gettoken, department/*, user/*, tag/*) for corps configured with \
PUT /admin/wecom/corps/CORPID: expiring tokens, errcode answers, 45009 past a per-API rate, \
a freeze errcode for a frozen corp, and change callbacks (change_contact, encrypted as WeCom's) \
POSTed to the corp's callback URL; a corp's contacts are the account's department/, member/ \
and tag/ entities. And the WeChat Official Account API (/cgi-bin/token, menu/*, material/*, \
tags/*, user/get, user/info/batchget, get_current_autoreply_info) for accounts configured with \
PUT /admin/oa/accounts/APPID: daily quotas (45009), followers with a per-account openid and a \
shared unionid, 48004 for a frozen account. And the Agora Chat REST API (/ORG/APP/users, \
/ORG/APP/chatgroups and their members) for apps configured with PUT /admin/agora/apps/ORG/APP, \
authenticated by AccessToken2 app tokens: 100 calls a second per app (429 reach_limit), 403 \
for a frozen app. Runs until SIGTERM or Ctrl-C. Prints `listening on http://ADDR` on \
stdout once bound.",
    after_help = "Examples:\n  \
understudy sim --listen 127.0.0.1:8080 --seed-accounts corp-a=1000,corp-b=0\n  \
curl -s -X POST localhost:8080/admin/accounts/corp-a/status -d '{\"status\":\"frozen\",\"reason\":\"content report\"}'\n  \
curl -s -X POST localhost:8080/admin/accounts/corp-a/load -d '{\"rate\":10000,\"count\":1000000}'\n  \
curl -s -X PUT localhost:8080/admin/wecom/corps/ww0123 -d '{\"secret\":\"S\",\"ratePerMinute\":10000,\"freezeErrcode\":50003}'\n  \
curl -s 'localhost:8080/cgi-bin/gettoken?corpid=ww0123&corpsecret=S'\n  \
curl -s -X PUT localhost:8080/admin/oa/accounts/wx0123456789abcdef -d '{\"secret\":\"S\",\"followers\":[\"union-a\"]}'\n  \
curl -s 'localhost:8080/cgi-bin/token?grant_type=client_credential&appid=wx0123456789abcdef&secret=S'"
)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Bearer token every API call must carry (none: no authentication).
    #[arg(long, env = "UNDERSTUDY_SIM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accounts to create at start, each seeded with N generated entities: `id=N,id=N`.
    #[arg(long, value_delimiter = ',', value_parser = parse_seed_account)]
    seed_accounts: Vec<(String, u64)>,
    /// Seed of the entity generator for --seed-accounts (same seed, same entities).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Changes each account's feed retains; older cursors get `cursor_expired`.
    #[arg(long, default_value_t = DEFAULT_RETENTION)]
    retention: usize,
    /// Create unknown accounts on first use instead of answering 404.
    #[arg(long)]
    auto_create: bool,
}

fn parse_seed_account(s: &str) -> Result<(String, u64), String> {
    let (id, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=COUNT"))?;
    if id.is_empty() {
        return Err(format!("{s:?} has an empty account id"));
    }
    let n = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a count"))?;
    Ok((id.to_string(), n))
}

/// Runs the simulator (blocking) until a shutdown signal.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: SimArgs) -> anyhow::Result<()> {
    let store = SimStore::with_retention(args.retention);
    for (id, count) in &args.seed_accounts {
        let added = seed_account(store.account(id), *count, args.seed, true).await;
        tracing::info!(account = %id, entities = added, "seeded account");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}").context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    let config = ServerConfig {
        token: args.token,
        auto_create: args.auto_create,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::provider::sim::serve(
        listener,
        store,
        config,
        async {
            let _ = stop_rx.await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    match tokio::time::timeout(DRAIN, server).await {
        Ok(Ok(result)) => result.context("the server failed"),
        Ok(Err(join)) => Err(anyhow::anyhow!("the server task failed: {join}")),
        // Long-polls still open after the drain time: exit anyway.
        Err(_) => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_accounts_parse() {
        assert_eq!(
            parse_seed_account("corp-a=1000"),
            Ok(("corp-a".into(), 1000))
        );
        assert!(parse_seed_account("corp-a").is_err());
        assert!(parse_seed_account("=5").is_err());
        assert!(parse_seed_account("a=x").is_err());
    }
}
