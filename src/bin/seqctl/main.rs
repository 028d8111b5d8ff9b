//! `seqctl`: the command line for seqd's REST API (`/v1`), for operators
//! and provisioning scripts.
//!
//! Exit codes: 0 done (for `diff`: nothing would change), 1 `diff` found
//! something that would change, 2 an error (seqd's, printed with its HTTP
//! status, or none reached).

mod http;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use http::{segment, Url};

/// seqd's default `[control] listen` (src/control/config.rs).
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The sections of a config file that `PUT /v1/tables` replaces.
const TABLE_KEYS: &[&str] = &["client", "device", "pool", "service", "acl"];
/// The sections that stay as seqd was started; left out of the body.
const RUNTIME_KEYS: &[&str] = &["eal", "interface", "workers", "control"];

#[derive(Parser)]
#[command(
    name = "seqctl",
    version,
    about = "Command line for seqd's REST API",
    after_help = "Exit codes: 0 done (diff: no change), 1 diff: something would change, 2 error."
)]
struct Cli {
    /// seqd's control address (its `[control] listen`).
    #[arg(long, env = "SEQD_URL", default_value = DEFAULT_URL, global = true)]
    url: String,
    /// Bearer token (one of `admin_tokens`, or a tenant's).
    #[arg(long, env = "SEQD_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print seqd's JSON reply instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a reply (a big table takes a while to compile).
    #[arg(long, default_value_t = 120, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replace every table (client, devices, pools, services, ACLs) with a
    /// file's (`PUT /v1/tables`): a TOML config (only its table sections are
    /// sent) or a JSON tables body.
    Apply {
        file: PathBuf,
        /// Apply a file without any table section (it removes everything).
        #[arg(long)]
        allow_empty: bool,
    },
    /// What `apply FILE` would change, applying nothing (`POST /v1/validate`).
    Diff { file: PathBuf },
    /// One line per object.
    List { what: ListWhat },
    /// One object as JSON.
    Show {
        what: ShowWhat,
        /// The name (the number for a version; none for tables).
        name: Option<String>,
    },
    /// Packets and bytes per service port, in (from clients) and out.
    Stats {
        #[arg(long)]
        service: Option<String>,
    },
    /// Publish a kept version's tables again, as a new version.
    Rollback { version: u64 },
    /// Take a device out of service (its alternate or pool takes over) or
    /// back in.
    DeviceState { name: String, state: StateArg },
    /// Put device NEW in place of OLD in every service that uses it.
    ReplaceDevice { old: String, new: String },
    /// Copy a service (ports, sequences, ACLs) under a new name and IP.
    Replicate {
        service: String,
        new_name: String,
        new_ip: String,
    },
    /// Delete a service, device or pool (refused while a device or pool is
    /// in use).
    Delete { what: DeleteWhat, name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum ListWhat {
    Services,
    Devices,
    Pools,
    Versions,
    Interfaces,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShowWhat {
    Service,
    Device,
    Pool,
    Version,
    /// Every table as running (`GET /v1/tables`); `apply` takes it back.
    Tables,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeleteWhat {
    Service,
    Device,
    Pool,
}

#[derive(Clone, Copy, ValueEnum)]
enum StateArg {
    Up,
    Down,
}

/// Why a command failed; printed to stderr, exit 2.
enum Failure {
    /// Before or without a reply.
    Local(String),
    /// seqd refused: its status and error body.
    Api {
        request: String,
        status: u16,
        reason: String,
        body: Vec<u8>,
        file: Option<PathBuf>,
    },
}

impl Failure {
    fn print(&self) {
        match self {
            Failure::Local(m) => eprintln!("seqctl: {m}"),
            Failure::Api {
                request,
                status,
                reason,
                body,
                file,
            } => {
                eprintln!("seqctl: {request}: {status} {reason}");
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(e)) => {
                        for (k, label) in [("error", "error"), ("key", "key"), ("value", "value")] {
                            if let Some(v) = e.get(k) {
                                eprintln!("  {label}: {}", render::text(v));
                            }
                        }
                        if let Some(Value::Array(users)) = e.get("used_by") {
                            let users: Vec<String> = users.iter().map(render::text).collect();
                            eprintln!("  used by: {}", users.join(", "));
                        }
                    }
                    _ => {
                        let text = String::from_utf8_lossy(body);
                        if !text.trim().is_empty() {
                            eprintln!("  {}", text.trim());
                        }
                    }
                }
                if let Some(f) = file {
                    eprintln!(
                        "  file: {} (key paths count from 0: service[0] is its first [[service]])",
                        f.display()
                    );
                }
            }
        }
    }
}

struct Client {
    url: Url,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON serializes"));
        let reply = http::request(
            &self.url,
            self.token.as_deref(),
            method,
            path,
            body.as_deref(),
            self.timeout,
        )
        .map_err(|e| Failure::Local(e.0))?;
        if !(200..300).contains(&reply.status) {
            return Err(Failure::Api {
                request: format!("{method} {path}"),
                status: reply.status,
                reason: reply.reason,
                body: reply.body,
                file: None,
            });
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            Failure::Local(format!(
                "{method} {path}: the reply is not JSON ({e}): {}",
                String::from_utf8_lossy(&reply.body)
            ))
        })
    }
}

/// The `/v1/tables` body of a tables file: TOML (a whole seqd config, or
/// only table sections) or JSON (a tables body, or what `GET /v1/tables`
/// and `GET /v1/versions/N` answer), by extension or else by content.
fn tables_body(path: &Path, allow_empty: bool) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Local(format!("{}: {e}", path.display())))?;
    let json = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("toml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    let value: Value = if json {
        serde_json::from_str(&text)
            .map_err(|e| Failure::Local(format!("{}: not JSON: {e}", path.display())))?
    } else {
        let t: toml::Table = toml::from_str(&text)
            .map_err(|e| Failure::Local(format!("{}: not TOML: {e}", path.display())))?;
        serde_json::to_value(t).expect("TOML converts to JSON")
    };
    let Value::Object(mut obj) = value else {
        return Err(Failure::Local(format!(
            "{}: not a table of sections (an object)",
            path.display()
        )));
    };
    let has_tables =
        |o: &serde_json::Map<String, Value>| TABLE_KEYS.iter().any(|k| o.contains_key(*k));
    // `GET /v1/tables` and `GET /v1/versions/N`: {"version": ..., "tables": {...}}.
    if !has_tables(&obj) {
        if let Some(Value::Object(inner)) = obj.get("tables") {
            obj = inner.clone();
        }
    }
    for k in RUNTIME_KEYS {
        obj.remove(*k);
    }
    // Nothing left would remove everything; a misspelt section goes to
    // seqd, which names it.
    if obj.is_empty() && !allow_empty {
        return Err(Failure::Local(format!(
            "{}: no [client], [[device]], [[pool]], [[service]] or [[acl]]: applying it would remove every table (--allow-empty does that)",
            path.display()
        )));
    }
    Ok(Value::Object(obj))
}

fn with_file(e: Failure, file: &Path) -> Failure {
    match e {
        Failure::Api {
            request,
            status,
            reason,
            body,
            file: _,
        } if status == 400 => Failure::Api {
            request,
            status,
            reason,
            body,
            file: Some(file.to_path_buf()),
        },
        other => other,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON serializes")
}

/// Runs one command; the exit code.
fn run(cli: Cli) -> Result<u8, Failure> {
    let client = Client {
        url: Url::parse(&cli.url).map_err(Failure::Local)?,
        token: cli.token.filter(|t| !t.is_empty()),
        timeout: Duration::from_secs(cli.timeout.max(1)),
    };
    let json = cli.json;
    // The reply to a change: the version and what changed.
    let changed = |reply: Value| {
        if json {
            println!("{}", pretty(&reply));
        } else {
            print!("{}", render::applied(&reply));
        }
        Ok(0)
    };
    match cli.command {
        Command::Apply { file, allow_empty } => {
            let body = tables_body(&file, allow_empty)?;
            let reply = client
                .call("PUT", "/v1/tables", Some(&body))
                .map_err(|e| with_file(e, &file))?;
            changed(reply)
        }
        Command::Diff { file } => {
            let body = tables_body(&file, true)?;
            let reply = client
                .call("POST", "/v1/validate", Some(&body))
                .map_err(|e| with_file(e, &file))?;
            let any = render::changes_anything(&reply["changes"]);
            if json {
                println!("{}", pretty(&reply));
            } else {
                let lines = render::changes(&reply["changes"]);
                if lines.is_empty() {
                    println!("no changes");
                } else {
                    println!("would be {}", render::record(&reply));
                    for l in lines.iter().chain(&render::takeovers(&reply["changes"])) {
                        println!("{l}");
                    }
                }
            }
            Ok(u8::from(any))
        }
        Command::List { what } => {
            let (path, show): (&str, fn(&Value) -> String) = match what {
                ListWhat::Services => ("/v1/services", render::services),
                ListWhat::Devices => ("/v1/devices", render::devices),
                ListWhat::Pools => ("/v1/pools", render::pools),
                ListWhat::Versions => ("/v1/versions", render::versions),
                ListWhat::Interfaces => ("/v1/interfaces", render::interfaces),
            };
            let reply = client.call("GET", path, None)?;
            if json {
                println!("{}", pretty(&reply));
            } else {
                print!("{}", show(&reply));
            }
            Ok(0)
        }
        Command::Show { what, name } => {
            let path = match (what, name) {
                (ShowWhat::Tables, None) => "/v1/tables".to_string(),
                (ShowWhat::Tables, Some(n)) => {
                    return Err(Failure::Local(format!(
                        "show tables takes no name (got {n:?})"
                    )))
                }
                (_, None) => return Err(Failure::Local("show: which one? (a name)".into())),
                (ShowWhat::Service, Some(n)) => format!("/v1/services/{}", segment(&n)),
                (ShowWhat::Device, Some(n)) => format!("/v1/devices/{}", segment(&n)),
                (ShowWhat::Pool, Some(n)) => format!("/v1/pools/{}", segment(&n)),
                (ShowWhat::Version, Some(n)) => format!("/v1/versions/{}", segment(&n)),
            };
            println!("{}", pretty(&client.call("GET", &path, None)?));
            Ok(0)
        }
        Command::Stats { service } => {
            let reply = client.call("GET", "/v1/stats", None)?;
            let all: Vec<&Value> = reply["services"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let picked: Vec<&Value> = match &service {
                None => all,
                Some(name) => {
                    let p: Vec<&Value> =
                        all.into_iter().filter(|s| s["service"] == *name).collect();
                    if p.is_empty() {
                        return Err(Failure::Local(format!(
                            "no counters for service {name:?} (is it a service? `seqctl list services`)"
                        )));
                    }
                    p
                }
            };
            if json {
                match service {
                    None => println!("{}", pretty(&reply)),
                    Some(_) => println!("{}", pretty(&json!(picked))),
                }
            } else {
                print!("{}", render::stats(&picked));
            }
            Ok(0)
        }
        Command::Rollback { version } => {
            changed(client.call("POST", &format!("/v1/versions/{version}/rollback"), None)?)
        }
        Command::DeviceState { name, state } => {
            let state = match state {
                StateArg::Up => "up",
                StateArg::Down => "down",
            };
            changed(client.call(
                "PUT",
                &format!("/v1/devices/{}/state", segment(&name)),
                Some(&json!({ "state": state })),
            )?)
        }
        Command::ReplaceDevice { old, new } => changed(client.call(
            "POST",
            &format!("/v1/devices/{}/replace", segment(&old)),
            Some(&json!({ "with": new })),
        )?),
        Command::Replicate {
            service,
            new_name,
            new_ip,
        } => changed(client.call(
            "POST",
            &format!("/v1/services/{}/replicate", segment(&service)),
            Some(&json!({ "name": new_name, "ip": new_ip })),
        )?),
        Command::Delete { what, name } => {
            let kind = match what {
                DeleteWhat::Service => "services",
                DeleteWhat::Device => "devices",
                DeleteWhat::Pool => "pools",
            };
            changed(client.call("DELETE", &format!("/v1/{kind}/{}", segment(&name)), None)?)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            e.print();
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(name: &str, text: &str) -> Result<Value, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        tables_body(&p, false).map_err(|e| match e {
            Failure::Local(m) => m,
            Failure::Api { .. } => unreachable!(),
        })
    }

    #[test]
    fn whole_config_keeps_only_tables() {
        let b = body_of(
            "seqd.toml",
            "[eal]\ncores = \"0-1\"\n[[interface]]\nname = \"c\"\n[workers]\nlcores = [1]\n[control]\nlisten = \"127.0.0.1:0\"\n[client]\ninterface = \"c\"\n[[device]]\nname = \"d\"\n[[service]]\nname = \"s\"\n[[service.port]]\nport = 80\nhops = [\"d\"]\n",
        )
        .unwrap();
        assert_eq!(
            b,
            json!({ "client": { "interface": "c" }, "device": [{ "name": "d" }],
                    "service": [{ "name": "s", "port": [{ "port": 80, "hops": ["d"] }] }] })
        );
    }

    #[test]
    fn json_by_extension_or_content_and_get_tables_replies() {
        let tables = json!({ "service": [], "device": [{ "name": "d" }] });
        assert_eq!(body_of("t.json", &tables.to_string()).unwrap(), tables);
        assert_eq!(body_of("t.txt", &tables.to_string()).unwrap(), tables);
        let reply = json!({ "version": 7, "tables": tables });
        assert_eq!(body_of("backup", &reply.to_string()).unwrap(), tables);
        // No extension, not JSON: TOML.
        assert_eq!(
            body_of("tables", "[[pool]]\nname = \"p\"\ndevices = []\n").unwrap(),
            json!({ "pool": [{ "name": "p", "devices": [] }] })
        );
    }

    #[test]
    fn unknown_sections_go_to_seqd_and_empty_files_are_refused() {
        let b = body_of(
            "x.toml",
            "[eal]\ncores = \"0-1\"\n[[services]]\nname = \"s\"\n",
        )
        .unwrap();
        assert_eq!(b, json!({ "services": [{ "name": "s" }] }));
        let e = body_of("x.toml", "[eal]\ncores = \"0-1\"\n").unwrap_err();
        assert!(e.contains("would remove every table"), "{e}");
        let e = body_of("x.toml", "[client\n").unwrap_err();
        assert!(
            e.contains("x.toml: not TOML") && e.contains("line 1"),
            "{e}"
        );
        let e = body_of("x.json", "[1]").unwrap_err();
        assert!(e.contains("not a table of sections"), "{e}");
    }
}
