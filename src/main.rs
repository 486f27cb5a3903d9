//! The `tocsin` binary: parses the command line, sets up logging, and hands
//! over to the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::path::PathBuf;
use tocsin::client::Client;
use tocsin::config::{Config, ConfigError, IntegrationKind, LogFormat};

#[derive(Parser)]
#[command(name = "tocsin", version, about = "Chat-ops bot and alert escalator")]
struct Cli {
    /// Configuration file [default: tocsin.toml, else tocsin.example.toml]
    #[arg(long, global = true, env = "TOCSIN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Load and validate the configuration; print every problem.
    Check,
    /// Look at incidents on a running server.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Send alert events to a running server.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Save a consistent snapshot of a running server's store (JSON lines;
    /// an admin token).
    Backup {
        /// Where to write it.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Restore a backup into an empty data directory or an empty
    /// PostgreSQL database (with tocsin stopped).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The data directory [default: the config's storage.path]
        #[arg(long, conflicts_with = "to")]
        data: Option<PathBuf>,
        /// A PostgreSQL URL (postgres://user:password@host/db) to restore
        /// into instead of a data directory: how a sled deployment moves to
        /// `[storage] backend = "postgres"`.
        #[arg(long)]
        to: Option<String>,
    },
    /// Ask a running server whether it is ready (exit 0) or not (exit 1);
    /// for container health checks.
    Health {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Audit trail checks.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Routing rules: which rule an alert's labels match, from the config.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Who is on call now (and next), on a running server.
    #[command(args_conflicts_with_subcommands = true)]
    Oncall {
        /// Only this schedule.
        schedule: Option<String>,
        #[command(subcommand)]
        command: Option<OncallCommand>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Discord setup.
    Discord {
        #[command(subcommand)]
        command: DiscordCommand,
    },
    /// Per-user API tokens on a running server (needs an admin token, such
    /// as the config's [api] token).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Contact methods.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// MTTA and MTTR by service and week, from the stored incidents of a
    /// running server; with --pages, pages per person and how many were
    /// outside working hours.
    Report {
        /// The window: incidents opened in the last DURATION (like 30d), or
        /// since an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
        /// Pages per person (and outside working hours) instead of
        /// response times.
        #[arg(long)]
        pages: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Maintenance windows on a running server: alerts they cover page
    /// nobody until they end (a write token to start or end one).
    Maintenance {
        #[command(subcommand)]
        command: MaintenanceCommand,
    },
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// List the windows, configured and made at runtime.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a window on a service now, for DURATION (like 2h).
    Start {
        /// The service.
        service: String,
        /// How long, like 2h or 90m.
        duration: humantime::Duration,
        /// Why (the rest of the line).
        reason: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// End a window now: what it held and still fires is paged.
    End {
        /// The window's id (see `tocsin maintenance list`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token for a configured user; it is printed this once.
    Create {
        /// The configured user it acts as.
        #[arg(long)]
        user: String,
        /// read (every GET), write (and acknowledge, resolve, escalate,
        /// snooze) or admin (and overrides, backups, tokens).
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the tokens (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a token: it is refused from now on.
    Revoke {
        /// The token's id (see `tocsin token list`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a user a test page by SMS, call or push (straight to Twilio or
    /// ntfy with this config; the server need not run).
    Test {
        /// The tocsin user.
        #[arg(long)]
        user: String,
        /// How.
        #[arg(long, value_enum)]
        method: TestMethod,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TestMethod {
    Sms,
    Voice,
    Push,
}

#[derive(Subcommand)]
enum DiscordCommand {
    /// Overwrite the guild's application commands (/incident, /oncall,
    /// /page) with tocsin's definitions; `serve` does this at start too.
    Register,
}

#[derive(Subcommand)]
enum OncallCommand {
    /// Put a user on call in a schedule for a time range.
    Override {
        /// The schedule.
        #[arg(long)]
        schedule: String,
        /// Who covers.
        #[arg(long)]
        user: String,
        /// From (RFC 3339) [default: now]
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Until (RFC 3339); or use --for.
        #[arg(long, conflicts_with = "duration")]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// How long, like 8h.
        #[arg(long = "for", id = "duration")]
        duration: Option<humantime::Duration>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// POSTs `/v1/incidents/{id}/{verb}` with `body` (and `by`), and prints
/// the incident as it now is.
async fn act_on(
    config: &Option<std::path::PathBuf>,
    act: &ActArgs,
    verb: &str,
    mut body: serde_json::Value,
) -> anyhow::Result<()> {
    if let Some(by) = &act.by {
        body["by"] = serde_json::json!(by);
    }
    let client = api_client(&act.server, config, true)?;
    let answer = client
        .post(&format!("/v1/incidents/{}/{verb}", act.id), &body)
        .await?;
    let inc = &answer["incident"];
    println!(
        "{} is {}: {}",
        inc["key"].as_str().unwrap_or(&act.id),
        inc["status"].as_str().unwrap_or("?"),
        inc["title"].as_str().unwrap_or_default()
    );
    Ok(())
}

#[derive(Args)]
struct ServerArgs {
    /// Base URL of the server [default: from the config's server.listen,
    /// or server.public_listen for `alert send`]
    #[arg(long, env = "TOCSIN_URL")]
    url: Option<String>,
    /// API token: a per-user token, or the bootstrap [api] token [default:
    /// the config's [api] token]
    #[arg(long, env = "TOCSIN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The token to send: `--token`, else the config's bootstrap token;
/// `required` refuses to go on without one.
fn api_token(server: &ServerArgs, cli: &Option<PathBuf>, required: bool) -> Result<Option<String>> {
    if let Some(t) = &server.token {
        return Ok(Some(t.clone()));
    }
    let from_config = load_config(cli)
        .ok()
        .and_then(|c| c.api.token)
        .map(|t| t.expose().to_string());
    if required && from_config.is_none() {
        bail!("no --token given (or TOCSIN_API_TOKEN) and the config has no [api] token");
    }
    Ok(from_config)
}

/// A client for the API listener, with the token.
fn api_client(server: &ServerArgs, cli: &Option<PathBuf>, required: bool) -> Result<Client> {
    Ok(Client::new(&base_url(server, cli)).with_token(api_token(server, cli, required)?))
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        /// Only incidents with this status.
        #[arg(long, value_parser = ["open", "triggered", "acknowledged", "resolved"])]
        status: Option<String>,
        /// Only open incidents of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only open incidents of this severity (sev1..sev4).
        #[arg(long)]
        severity: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only incidents older than this one (`INC-42`): the next page.
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one incident and its timeline.
    Show {
        /// `INC-42` or `42`.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print an incident's post-incident summary (Markdown).
    Summary {
        /// `INC-42` or `42`.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Acknowledge an incident: its escalation stops.
    Ack(ActArgs),
    /// Resolve an incident, with an optional note.
    Resolve {
        #[command(flatten)]
        act: ActArgs,
        /// What fixed it (goes into the timeline and summary).
        #[arg(long)]
        note: Option<String>,
    },
    /// Page the next escalation step now.
    Escalate(ActArgs),
    /// Add a note to the timeline (`action: ...` for an action item).
    Note {
        #[command(flatten)]
        act: ActArgs,
        /// The note.
        text: String,
    },
    /// Stop paging for a while; escalation starts again after it.
    Snooze {
        #[command(flatten)]
        act: ActArgs,
        /// How long, like 30m or 2h (at most 7 days).
        #[arg(long = "for")]
        duration: String,
    },
}

/// Who acts on which incident, through which server.
#[derive(Args)]
struct ActArgs {
    /// `INC-42` or `42`.
    id: String,
    /// The configured user who acts (recorded in the timeline; another
    /// user than the token's needs an admin token).
    #[arg(long)]
    by: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an incident's timeline hash chain: an edited or deleted entry is named.
    Verify {
        /// `INC-42` or `42`.
        id: String,
        /// A chain head recorded outside the store (the `audit chain head`
        /// log line or the audit webhook at resolve): the chain must link to it.
        #[arg(long)]
        head: Option<String>,
        /// Accept entries linked without the audit key before the first keyed
        /// one (written before `[audit] key` was set).
        #[arg(long)]
        allow_unkeyed: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
enum RouteCommand {
    /// Print which of an integration's routes labels match, and why not the others.
    Test {
        /// The integration's name.
        #[arg(long)]
        integration: String,
        /// Labels as name=value pairs, comma-separated: severity=critical,team=db
        #[arg(long, default_value = "")]
        labels: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Post a test event (PagerDuty Events v2) to a running server.
    Send {
        /// One-line summary.
        #[arg(long, default_value = "Test alert from tocsin alert send")]
        summary: String,
        /// critical, error, warning or info.
        #[arg(long, default_value = "warning", value_parser = ["critical", "error", "warning", "info"])]
        severity: String,
        /// Dedup key; the server generates one for a trigger without it.
        #[arg(long)]
        dedup_key: Option<String>,
        /// What the event does.
        #[arg(long, value_enum, default_value = "trigger")]
        action: Action,
        /// Source of the alert.
        #[arg(long, default_value = "tocsin-cli")]
        source: String,
        /// Routing key [default: the first pagerduty integration's key in the config]
        #[arg(long, env = "TOCSIN_ROUTING_KEY", hide_env_values = true)]
        routing_key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn config_path(cli: &Option<PathBuf>) -> PathBuf {
    if let Some(p) = cli {
        return p.clone();
    }
    let own = PathBuf::from("tocsin.toml");
    if own.exists() {
        own
    } else {
        PathBuf::from("tocsin.example.toml")
    }
}

/// Refuses a configuration path that does not exist, saying where tocsin
/// looks for one.
fn config_exists(path: &std::path::Path) -> Result<()> {
    if !path.exists() {
        anyhow::bail!(
            "no configuration at {}: pass --config PATH, set TOCSIN_CONFIG, or create tocsin.toml in this directory (tocsin.example.toml, from the repository, is a start)",
            path.display()
        );
    }
    Ok(())
}

fn load_config(cli: &Option<PathBuf>) -> Result<Config> {
    let path = config_path(cli);
    config_exists(&path)?;
    Config::load(&path, &Config::process_env())
        .with_context(|| format!("loading configuration from {}", path.display()))
}

fn init_tracing(config: Option<&Config>) {
    use tracing_subscriber::EnvFilter;
    let level = config
        .map(|c| c.log.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if config.is_some_and(|c| c.log.format == LogFormat::Json) {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn base_url(server: &ServerArgs, cli: &Option<PathBuf>) -> String {
    listener_url(server, cli, false)
}

/// The base URL of the API listener, or with `public` of the public one
/// (the API listener when there is no `public_listen`).
fn listener_url(server: &ServerArgs, cli: &Option<PathBuf>, public: bool) -> String {
    if let Some(u) = &server.url {
        return u.clone();
    }
    match load_config(cli) {
        Ok(c) => {
            // A server listening on every address is reached on loopback.
            let mut addr = match c.server.public_listen {
                Some(p) if public => p,
                _ => c.server.listen,
            };
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        Err(e) => {
            // Say why the configured address is not used (an unset
            // `${VAR}`, a missing file), not just that 8080 did not answer.
            eprintln!("tocsin: {e:#}; trying http://127.0.0.1:8080 (or pass --url)");
            "http://127.0.0.1:8080".into()
        }
    }
}

/// mimalloc rather than the system allocator: sled clones and drops whole
/// tree nodes on every write, and glibc's malloc spent a fifth of the
/// writer thread's time on it (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve => {
            let config = load_config(&cli.config)?;
            init_tracing(Some(&config));
            for w in config.warnings() {
                tracing::warn!(key = %w.path, "{}", w.message);
            }
            let listeners = tocsin::app::Listeners::bind(&config.server).await?;
            tocsin::app::run(config, listeners, tocsin::app::shutdown_signal()).await?;
        }
        Command::Check => {
            let path = config_path(&cli.config);
            config_exists(&path)?;
            match Config::load(&path, &Config::process_env()) {
                Ok(c) => {
                    // Runbooks and templates too: every problem, with file and line.
                    let mut problems: Vec<String> = Vec::new();
                    let runbooks = match tocsin::runbook::load_dir(&c.runbooks.dir) {
                        Ok(r) => r.len(),
                        Err(e) => {
                            problems.extend(e.iter().map(|e| e.to_string()));
                            0
                        }
                    };
                    match tocsin::templates::Templates::load(c.templates.dir.as_deref()) {
                        Ok(t) => problems.extend(t.check_all().iter().map(|e| e.to_string())),
                        Err(e) => problems.extend(e.iter().map(|e| e.to_string())),
                    }
                    if !problems.is_empty() {
                        eprintln!("{}: {} problem(s)", path.display(), problems.len());
                        for p in problems {
                            eprintln!("  {p}");
                        }
                        std::process::exit(1);
                    }
                    let warnings = c.warnings();
                    if !warnings.is_empty() {
                        eprintln!("{}: {} warning(s)", path.display(), warnings.len());
                        for w in &warnings {
                            eprintln!("  warning: {w}");
                        }
                    }
                    println!(
                        "{}: OK ({} integrations, {} services, {} runbooks, {} templates)",
                        path.display(),
                        c.integrations.len(),
                        c.services.len(),
                        runbooks,
                        tocsin::templates::NAMES.len()
                    );
                }
                Err(ConfigError::Invalid(issues)) => {
                    eprintln!("{}: {} problem(s)", path.display(), issues.len());
                    for i in issues {
                        eprintln!("  {i}");
                    }
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Incidents { command } => match command {
            IncidentsCommand::List {
                status,
                service,
                severity,
                limit,
                before,
                server,
            } => {
                let client = api_client(server, &cli.config, false)?;
                let mut path = format!("/v1/incidents?limit={limit}");
                if let Some(s) = status {
                    path.push_str(&format!("&status={s}"));
                }
                for (name, v) in [("service", service), ("severity", severity)] {
                    if let Some(v) = v {
                        path.push('&');
                        path.push_str(&serde_urlencoded::to_string([(name, v)])?);
                    }
                }
                if let Some(b) = before {
                    path.push('&');
                    path.push_str(&serde_urlencoded::to_string([("before", &b)])?);
                }
                let body = client.get(&path).await?;
                print_incident_list(&body);
            }
            IncidentsCommand::Show { id, server } => {
                let client = api_client(server, &cli.config, false)?;
                let body = client.get(&format!("/v1/incidents/{id}")).await?;
                print_incident(&body);
            }
            IncidentsCommand::Summary { id, server } => {
                let client = api_client(server, &cli.config, false)?;
                let (md, _) = client
                    .get_text(&format!("/v1/incidents/{id}/summary"), "content-type")
                    .await?;
                print!("{md}");
            }
            IncidentsCommand::Ack(act) => {
                act_on(&cli.config, act, "acknowledge", serde_json::json!({})).await?;
            }
            IncidentsCommand::Resolve { act, note } => {
                let body = match note {
                    Some(n) => serde_json::json!({ "note": n }),
                    None => serde_json::json!({}),
                };
                act_on(&cli.config, act, "resolve", body).await?;
            }
            IncidentsCommand::Note { act, text } => {
                act_on(
                    &cli.config,
                    act,
                    "notes",
                    serde_json::json!({ "text": text }),
                )
                .await?;
            }
            IncidentsCommand::Escalate(act) => {
                act_on(&cli.config, act, "escalate", serde_json::json!({})).await?;
            }
            IncidentsCommand::Snooze { act, duration } => {
                act_on(
                    &cli.config,
                    act,
                    "snooze",
                    serde_json::json!({ "duration": duration }),
                )
                .await?;
            }
        },
        Command::Health { server } => {
            let url = format!(
                "{}/readyz",
                base_url(server, &cli.config).trim_end_matches('/')
            );
            let resp = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let ok = resp.status().is_success();
            println!("{}", resp.text().await.unwrap_or_default());
            if !ok {
                std::process::exit(1);
            }
        }
        Command::Backup { to, server } => {
            let token = api_token(server, &cli.config, true)?.unwrap_or_default();
            let url = format!(
                "{}/v1/backup",
                base_url(server, &cli.config).trim_end_matches('/')
            );
            let resp = reqwest::Client::new()
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            if !resp.status().is_success() {
                bail!(
                    "tocsin answered {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            // Streamed to the file as it comes (bounded memory), and
            // renamed into place only once its end line has arrived.
            let tmp = to.with_extension("partial");
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .with_context(|| format!("writing {}", tmp.display()))?,
            );
            let mut resp = resp;
            let mut lines = 0usize;
            let mut tail: Vec<u8> = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .context("the backup stream broke off; nothing was written")?
            {
                use std::io::Write;
                file.write_all(&chunk)?;
                lines += chunk.iter().filter(|b| **b == b'\n').count();
                tail.extend_from_slice(&chunk);
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            let last = String::from_utf8_lossy(&tail);
            let end: serde_json::Value = last
                .trim_end()
                .rsplit('\n')
                .next()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_default();
            if end["format"] != tocsin::store::BACKUP_END {
                let _ = std::fs::remove_file(&tmp);
                bail!(
                    "the backup was cut short (no end line); nothing was written to {}",
                    to.display()
                );
            }
            use std::io::Write;
            file.flush()?;
            file.get_ref().sync_all()?;
            drop(file);
            std::fs::rename(&tmp, to)?;
            println!(
                "Backup of {} records written to {}",
                lines.saturating_sub(2),
                to.display()
            );
        }
        Command::Restore {
            from,
            to: Some(url),
            ..
        } => {
            let file =
                std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
            let report = tocsin::store::PostgresStore::restore(url, std::io::BufReader::new(file))?;
            println!("Restored into PostgreSQL: {report}");
            println!(
                "Set [storage] backend = \"postgres\" and url to this database, then start tocsin. Pages sent after the backup was made may be sent again, with the idempotency keys they had then."
            );
        }
        Command::Restore { from, data, .. } => {
            let data = match data {
                Some(d) => d.clone(),
                None => load_config(&cli.config)?.storage.path,
            };
            let file =
                std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
            let report = tocsin::store::SledStore::restore(&data, std::io::BufReader::new(file))?;
            println!("Restored into {}: {report}", data.display());
            println!(
                "Pages sent after the backup was made may be sent again; each carries the idempotency key it had then, so receivers that drop repeated keys drop them. New incidents get new keys."
            );
        }
        Command::Route {
            command:
                RouteCommand::Test {
                    integration,
                    labels,
                },
        } => {
            let config = load_config(&cli.config)?;
            let Some(integ) = config.integrations.iter().find(|i| &i.name == integration) else {
                let names: Vec<&str> = config
                    .integrations
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect();
                bail!(
                    "no integration named '{integration}'; the config has: {}",
                    names.join(", ")
                );
            };
            let mut set = std::collections::BTreeMap::new();
            for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("'{pair}' is not name=value");
                };
                set.insert(k.trim().to_string(), v.trim().to_string());
            }
            let routes = tocsin::service::routing::Routes::new(&config.integrations);
            let mut chosen = None;
            for (i, failed) in routes.explain(integ, &set) {
                let r = &integ.routes[i];
                let what = if r.matchers.is_empty() {
                    "every alert".to_string()
                } else {
                    r.matchers.join(", ")
                };
                match (&failed, chosen) {
                    (None, None) => {
                        println!("rule {i} ({what}): MATCHES");
                        chosen = Some(i);
                    }
                    (None, Some(c)) => {
                        println!("rule {i} ({what}): matches too, but rule {c} came first")
                    }
                    (Some(m), _) => println!("rule {i} ({what}): no, {m} does not hold"),
                }
            }
            match chosen.map(|i| &integ.routes[i]) {
                Some(r) if r.drop => println!("=> dropped: stored, nothing opened or paged"),
                Some(r) => {
                    println!(
                        "=> service {}{}{}",
                        r.service.as_deref().unwrap_or(&integ.service),
                        r.severity
                            .as_deref()
                            .map(|s| format!(", severity {s}"))
                            .unwrap_or_default(),
                        r.escalation_policy
                            .as_deref()
                            .map(|p| format!(", escalation policy {p}"))
                            .unwrap_or_default()
                    );
                }
                None => println!(
                    "=> no rule matches: service {} (the integration's fallback)",
                    integ.service
                ),
            }
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    id,
                    head: anchor,
                    allow_unkeyed,
                    server,
                },
        } => {
            // The key from the config (`[audit] key`), else TOCSIN_AUDIT_KEY.
            let key = load_config(&cli.config)
                .ok()
                .and_then(|c| c.audit.key)
                .or_else(|| {
                    std::env::var("TOCSIN_AUDIT_KEY")
                        .ok()
                        .filter(|k| !k.is_empty())
                        .map(tocsin::secret::Secret::new)
                });
            let client = api_client(server, &cli.config, false)?;
            let (jsonl, head) = client
                .get_text(
                    &format!("/v1/incidents/{id}/timeline?format=jsonl"),
                    "x-tocsin-timeline-head",
                )
                .await?;
            let mut entries = Vec::new();
            for (i, line) in jsonl
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let e: tocsin::incident::TimelineEntry = serde_json::from_str(line)
                    .with_context(|| format!("timeline line {} is not a timeline entry", i + 1))?;
                entries.push(e);
            }
            let head = head.context("the server sent no x-tocsin-timeline-head")?;
            let options = tocsin::incident::VerifyOptions {
                key: key.as_ref(),
                allow_unkeyed: *allow_unkeyed,
                anchor: anchor.as_deref(),
            };
            match tocsin::incident::verify_chain(&entries, &head, options) {
                Ok(r) => {
                    let short = head.get(..28).unwrap_or(&head);
                    println!(
                        "{id}: {} entries, the hash chain is intact (head {short})",
                        r.entries
                    );
                    if r.keyed == r.entries {
                        println!(
                            "every entry is keyed: nobody without the audit key could have rewritten it"
                        );
                    } else if r.keyed > 0 {
                        println!(
                            "{} entries are keyed; the first {} predate the audit key and are protected only against naive edits",
                            r.keyed,
                            r.entries - r.keyed
                        );
                    } else {
                        println!(
                            "no entry is keyed: a rewrite that recomputes the chain would pass; set [audit] key, and compare the head with an external copy (--head)"
                        );
                    }
                    if let Some(at) = r.anchored_at {
                        println!("the recorded head matches entry {at}");
                    }
                }
                Err(e) => {
                    eprintln!("{id}: TAMPERED: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Alert {
            command:
                AlertCommand::Send {
                    summary,
                    severity,
                    dedup_key,
                    action,
                    source,
                    routing_key,
                    server,
                },
        } => {
            let key = match routing_key {
                Some(k) => k.clone(),
                None => {
                    let config = load_config(&cli.config)?;
                    let Some(i) = config
                        .integrations
                        .iter()
                        .find(|i| i.kind == IntegrationKind::Pagerduty)
                    else {
                        bail!("no --routing-key given and the config has no pagerduty integration");
                    };
                    i.key.expose().to_string()
                }
            };
            let action = match action {
                Action::Trigger => "trigger",
                Action::Acknowledge => "acknowledge",
                Action::Resolve => "resolve",
            };
            let mut body = json!({ "routing_key": key, "event_action": action });
            if let Some(k) = dedup_key {
                body["dedup_key"] = json!(k);
            }
            if action == "trigger" {
                body["payload"] =
                    json!({ "summary": summary, "source": source, "severity": severity });
            }
            let client = Client::new(&listener_url(server, &cli.config, true));
            let answer = client.post("/v2/enqueue", &body).await?;
            println!(
                "{} (dedup_key {})",
                answer["message"].as_str().unwrap_or("sent"),
                answer["dedup_key"].as_str().unwrap_or("?")
            );
        }
        Command::Notify {
            command: NotifyCommand::Test { user, method },
        } => {
            use tocsin::config::ContactKind;
            let config = std::sync::Arc::new(load_config(&cli.config)?);
            let notifiers = tocsin::notify::worker::Notifiers::new(config, Vec::new())
                .map_err(anyhow::Error::msg)?;
            let kind = match method {
                TestMethod::Sms => ContactKind::Sms,
                TestMethod::Voice => ContactKind::Voice,
                TestMethod::Push => ContactKind::Push,
            };
            let sent = notifiers
                .send_test(user, kind)
                .await
                .map_err(|e| anyhow::anyhow!("the test page failed: {e}"))?;
            println!("{sent}");
        }
        Command::Discord {
            command: DiscordCommand::Register,
        } => {
            let config = load_config(&cli.config)?;
            let Some(discord) = &config.discord else {
                bail!("the config has no [discord] section");
            };
            let platform =
                tocsin::chat::discord::DiscordPlatform::new(discord, config.notify.request_timeout)
                    .map_err(anyhow::Error::msg)?;
            let names = platform
                .register_commands()
                .await
                .context("registering the Discord commands")?;
            println!(
                "Registered {} in guild {}",
                names
                    .iter()
                    .map(|n| format!("/{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                discord.guild_id
            );
        }
        Command::Oncall {
            schedule,
            command: None,
            server,
        } => {
            let client = api_client(server, &cli.config, false)?;
            let body = client.get("/v1/oncall").await?;
            print_oncall(&body, schedule.as_deref())?;
        }
        Command::Oncall {
            command:
                Some(OncallCommand::Override {
                    schedule,
                    user,
                    from,
                    to,
                    duration,
                    server,
                }),
            ..
        } => {
            let now = tocsin::clock::Clock::now(&tocsin::clock::SystemClock);
            let start = from.unwrap_or(now);
            let end = match (to, duration) {
                (Some(t), _) => *t,
                (None, Some(d)) => start + chrono::Duration::from_std((*d).into())?,
                (None, None) => bail!("give --to or --for"),
            };
            let client = api_client(server, &cli.config, true)?;
            let body = client
                .post(
                    &format!("/v1/schedules/{schedule}/overrides"),
                    &json!({"user": user, "start": start, "end": end}),
                )
                .await?;
            let o = &body["override"];
            println!(
                "Override {} on {}: {} from {} to {}",
                o["id"],
                schedule,
                o["user"].as_str().unwrap_or("?"),
                o["start"].as_str().unwrap_or("?"),
                o["end"].as_str().unwrap_or("?")
            );
            println!("On call over that time now:");
            for s in body["coverage"].as_array().into_iter().flatten() {
                let source = match &s["source"] {
                    Value::String(v) => v.clone(),
                    v => v["layer"]
                        .as_str()
                        .map_or_else(|| "?".into(), |l| format!("layer {l}")),
                };
                println!(
                    "  {} to {}  {} ({source})",
                    s["start"].as_str().unwrap_or("?"),
                    s["end"].as_str().unwrap_or("?"),
                    s["user"].as_str().unwrap_or("?"),
                );
            }
            for other in body["overrides_overlapped"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!(
                    "Note: it overlaps override {} ({} from {} to {}); the newest override wins where they overlap.",
                    other["id"],
                    other["user"].as_str().unwrap_or("?"),
                    other["start"].as_str().unwrap_or("?"),
                    other["end"].as_str().unwrap_or("?")
                );
            }
        }
        Command::Token { command } => token_command(command, &cli.config).await?,
        Command::Report {
            since,
            csv,
            pages,
            server,
        } => {
            let client = api_client(server, &cli.config, false)?;
            let query = serde_urlencoded::to_string([
                ("since", since.as_str()),
                ("format", if *csv { "csv" } else { "text" }),
            ])?;
            let report = if *pages { "pages" } else { "response" };
            let (text, _) = client
                .get_text(&format!("/v1/reports/{report}?{query}"), "content-type")
                .await?;
            print!("{text}");
        }
        Command::Maintenance { command } => maintenance_command(command, &cli.config).await?,
    }
    Ok(())
}

/// One line per window: id, name, when, what it covers.
fn print_window(w: &Value) {
    let state = if w["active"] == true {
        "ACTIVE"
    } else {
        "inactive"
    };
    let covers: Vec<String> = w["services"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(w["matchers"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    println!(
        "{:<16} {:<8} {} ({}) {} .. {}{}{}",
        w["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| w["id"].to_string()),
        state,
        w["name"].as_str().unwrap_or("?"),
        covers.join(", "),
        w["start"].as_str().unwrap_or("-"),
        w["end"].as_str().unwrap_or("-"),
        w["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        if w["source"] == "config" {
            " [config]"
        } else {
            ""
        }
    );
}

async fn maintenance_command(command: &MaintenanceCommand, cli: &Option<PathBuf>) -> Result<()> {
    match command {
        MaintenanceCommand::List { server } => {
            let body = api_client(server, cli, false)?
                .get("/v1/maintenance")
                .await?;
            let windows = body["windows"].as_array().cloned().unwrap_or_default();
            if windows.is_empty() {
                println!("No maintenance windows.");
            }
            for w in &windows {
                print_window(w);
            }
        }
        MaintenanceCommand::Start {
            service,
            duration,
            reason,
            server,
        } => {
            let mut body = json!({
                "services": [service],
                "duration": duration.to_string(),
            });
            if !reason.is_empty() {
                body["reason"] = json!(reason.join(" "));
            }
            let w = api_client(server, cli, true)?
                .post("/v1/maintenance", &body)
                .await?;
            print!("Started maintenance window ");
            print_window(&w);
        }
        MaintenanceCommand::End { id, server } => {
            let w = api_client(server, cli, true)?
                .delete(&format!("/v1/maintenance/{id}"))
                .await?;
            print!("Ended maintenance window ");
            print_window(&w);
        }
    }
    Ok(())
}

async fn token_command(command: &TokenCommand, cli: &Option<PathBuf>) -> Result<()> {
    match command {
        TokenCommand::Create {
            user,
            scope,
            server,
        } => {
            let client = api_client(server, cli, true)?;
            let body = client
                .post("/v1/tokens", &json!({ "user": user, "scope": scope }))
                .await?;
            let t = &body["token"];
            println!(
                "Token {} for {} ({}); it is shown only this once:",
                t["id"].as_str().unwrap_or("?"),
                t["user"].as_str().unwrap_or("?"),
                t["scope"].as_str().unwrap_or("?")
            );
            println!("{}", t["token"].as_str().unwrap_or("?"));
        }
        TokenCommand::List { server } => {
            let body = api_client(server, cli, true)?.get("/v1/tokens").await?;
            let empty = Vec::new();
            let list = body["tokens"].as_array().unwrap_or(&empty);
            if list.is_empty() {
                println!("No tokens.");
                return Ok(());
            }
            println!(
                "{:<13} {:<12} {:<6} {:<20} STATE",
                "ID", "USER", "SCOPE", "CREATED"
            );
            for t in list {
                let at = |k: &str| t[k].as_str().and_then(|v| v.get(..19)).map(str::to_string);
                println!(
                    "{:<13} {:<12} {:<6} {:<20} {}",
                    t["id"].as_str().unwrap_or("?"),
                    t["user"].as_str().unwrap_or("?"),
                    t["scope"].as_str().unwrap_or("?"),
                    at("created_at").unwrap_or_else(|| "?".into()),
                    match at("revoked_at") {
                        Some(r) => format!("revoked {r}"),
                        None => "active".into(),
                    }
                );
            }
        }
        TokenCommand::Revoke { id, server } => {
            let body = api_client(server, cli, true)?
                .delete(&format!("/v1/tokens/{id}"))
                .await?;
            let t = &body["token"];
            println!(
                "Token {} ({}) is revoked",
                t["id"].as_str().unwrap_or(id),
                t["user"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn print_oncall(body: &Value, only: Option<&str>) -> Result<()> {
    let empty = Vec::new();
    let list = body["oncall"].as_array().unwrap_or(&empty);
    let mut shown = 0;
    for s in list {
        let name = s["schedule"].as_str().unwrap_or("?");
        if only.is_some_and(|o| o != name) {
            continue;
        }
        shown += 1;
        let who = |v: &Value| match v["user"].as_str() {
            Some(u) => format!("{u} until {}", v["end"].as_str().unwrap_or("?")),
            None => "nobody".into(),
        };
        println!("{name} ({})", s["time_zone"].as_str().unwrap_or("?"));
        println!("  now:  {}", who(&s["on_call"]));
        println!("  next: {}", who(&s["next"]));
    }
    if shown == 0 {
        match only {
            Some(o) => bail!("no schedule named '{o}'"),
            None => println!("No schedules."),
        }
    }
    Ok(())
}

fn print_incident_list(body: &Value) {
    let empty = Vec::new();
    let list = body["incidents"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        println!("No incidents.");
        return;
    }
    println!(
        "{:<9} {:<13} {:<5} {:<12} {:<20} TITLE",
        "ID", "STATUS", "SEV", "SERVICE", "OPENED"
    );
    for i in list {
        println!(
            "{:<9} {:<13} {:<5} {:<12} {:<20} {}",
            i["key"].as_str().unwrap_or("?"),
            i["status"].as_str().unwrap_or("?"),
            i["severity"].as_str().unwrap_or("?").to_uppercase(),
            i["service"].as_str().unwrap_or("?"),
            i["created_at"]
                .as_str()
                .unwrap_or("?")
                .get(..19)
                .unwrap_or("?"),
            i["title"].as_str().unwrap_or(""),
        );
    }
    if let Some(next) = body["next"].as_str() {
        println!("Older incidents: the same command with --before {next}");
    }
}

fn print_incident(body: &Value) {
    let i = &body["incident"];
    println!(
        "{}  {}",
        i["key"].as_str().unwrap_or("?"),
        i["title"].as_str().unwrap_or("")
    );
    for (label, key) in [
        ("Status", "status"),
        ("Severity", "severity"),
        ("Service", "service"),
        ("Opened", "created_at"),
        ("Acknowledged", "acknowledged_at"),
        ("Resolved", "resolved_at"),
    ] {
        if let Some(v) = i[key].as_str() {
            println!(
                "  {label:<13} {}",
                if key == "severity" {
                    v.to_uppercase()
                } else {
                    v.to_string()
                }
            );
        }
    }
    println!("  {:<13} {}", "Events", i["event_count"]);
    println!("Timeline:");
    for e in body["timeline"].as_array().into_iter().flatten() {
        // A person with a principal is `{"user", "principal"}`.
        let name = &e["actor"]["name"];
        let actor = match name.as_str().or_else(|| name["user"].as_str()) {
            Some(n) => n.to_string(),
            None => "tocsin".into(),
        };
        let entry: Result<tocsin::incident::TimelineEntry, _> = serde_json::from_value(e.clone());
        let text = entry
            .map(|t| t.event.describe())
            .unwrap_or_else(|_| e["type"].as_str().unwrap_or("?").to_string());
        println!(
            "  {}  {:<20} {}",
            e["at"].as_str().unwrap_or("?").get(..19).unwrap_or("?"),
            actor,
            text
        );
    }
}
