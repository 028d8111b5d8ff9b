//! The control side's one source of truth: the running config, the counter
//! slots, and the versions published so far. Every change — a SIGHUP reload
//! or a REST update — goes through [`ControlState::apply`]: validated and
//! compiled off the datapath, then published to every worker in one step, or
//! refused with the running tables left exactly as they were.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::acls::AclConfig;
use super::config::Config;
use super::services::{self, ClientConfig, DeviceConfig, ServiceConfig};
use super::slots::Slots;
use crate::datapath::tables::Published;
use crate::runtime::StatsSource;

/// A refused change: what is wrong, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeError {
    /// The key or JSON path of the bad value (empty when it is the body).
    pub key: String,
    pub value: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}", self.key)?;
            if let Some(v) = &self.value {
                write!(f, " = {v}")?;
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.message)
    }
}

/// One accepted version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// "config", "sighup" or "rest".
    pub origin: &'static str,
    pub service_ports: usize,
    pub devices: usize,
    pub acl_rules: usize,
}

/// The tables part of a config, as the provisioner sends it in JSON: the
/// same keys as the TOML file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TablesBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientConfig>,
    #[serde(rename = "device", default)]
    pub devices: Vec<DeviceConfig>,
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceConfig>,
    #[serde(rename = "acl", default)]
    pub acls: Vec<AclConfig>,
}

/// The last accepted version as kept in the state directory: the text that
/// was accepted, so a restart compiles exactly the same tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u64,
    /// "json": a `/v1/tables` body; "toml": a whole config file.
    pub format: String,
    pub body: String,
}

const STATE_FILE: &str = "tables.json";

/// Writes `p` into `dir` atomically: a temporary file, fsync, rename, and
/// fsync of the directory, so a crash leaves the old or the new version.
pub fn persist(dir: &Path, p: &Persisted) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(
        serde_json::to_string(p)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The last accepted version in `dir`, if there is one.
pub fn restore(dir: &Path) -> std::io::Result<Option<Persisted>> {
    match std::fs::read_to_string(dir.join(STATE_FILE)) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", dir.join(STATE_FILE).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `config` with its tables replaced by what `p` holds.
pub fn config_from_persisted(
    config: &Config,
    p: &Persisted,
    cpus: &[u32],
) -> Result<Config, ChangeError> {
    match p.format.as_str() {
        "json" => with_tables(config, p.body.as_bytes()),
        "toml" => {
            let whole =
                Config::parse_with_cpus(&p.body, "state", cpus).map_err(|e| ChangeError {
                    key: String::new(),
                    value: None,
                    message: e.to_string(),
                })?;
            let mut new = config.clone();
            new.client = whole.client;
            new.devices = whole.devices;
            new.services = whole.services;
            new.acls = whole.acls;
            Ok(new)
        }
        other => Err(ChangeError {
            key: "format".into(),
            value: Some(other.into()),
            message: "unknown state format".into(),
        }),
    }
}

/// `config` with its tables replaced by a JSON `/v1/tables` body.
pub fn with_tables(config: &Config, body: &[u8]) -> Result<Config, ChangeError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let t: TablesBody = serde_path_to_error::deserialize(de).map_err(|e| ChangeError {
        key: e.path().to_string(),
        value: None,
        message: e.inner().to_string(),
    })?;
    let mut new = config.clone();
    new.client = t.client;
    new.devices = t.devices;
    new.services = t.services;
    new.acls = t.acls;
    Ok(new)
}

impl TablesBody {
    /// The tables part of `config`.
    pub fn of(config: &Config) -> TablesBody {
        TablesBody {
            client: config.client.clone(),
            devices: config.devices.clone(),
            services: config.services.clone(),
            acls: config.acls.clone(),
        }
    }

    /// As kept in the state directory.
    pub fn persisted(config: &Config, version: u64) -> Persisted {
        Persisted {
            version,
            format: "json".into(),
            body: serde_json::to_string(&TablesBody::of(config)).expect("config serializes"),
        }
    }
}

pub struct ControlState {
    current: Config,
    slots: Slots,
    cpus: Vec<u32>,
    versions: Vec<VersionRecord>,
    published: Arc<Published>,
    source: StatsSource,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn record(
    version: u64,
    origin: &'static str,
    config: &Config,
    tables: &crate::datapath::tables::Tables,
) -> VersionRecord {
    VersionRecord {
        version,
        time: now(),
        origin,
        service_ports: tables.ports.len(),
        devices: tables.devices.len(),
        acl_rules: config.acls.iter().map(|a| a.rules.len()).sum(),
    }
}

impl ControlState {
    /// The state of a run started with `config` (already compiled and
    /// published as version 1 with `slots`).
    pub fn new(
        config: Config,
        slots: Slots,
        cpus: Vec<u32>,
        published: Arc<Published>,
        source: StatsSource,
    ) -> Self {
        let first = record(published.version(), "config", &config, &published.load(0));
        ControlState {
            current: config,
            slots,
            cpus,
            versions: vec![first],
            published,
            source,
        }
    }

    /// The running config.
    pub fn current(&self) -> &Config {
        &self.current
    }

    /// The running config with `service`'s ACLs (on every interface)
    /// replaced by a JSON array of `[[acl]]` entries; each may leave out
    /// `service` or must name this one.
    pub fn with_service_acls(&self, service: &str, body: &[u8]) -> Result<Config, ChangeError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let acls: Vec<AclConfig> =
            serde_path_to_error::deserialize(de).map_err(|e| ChangeError {
                key: e.path().to_string(),
                value: None,
                message: e.inner().to_string(),
            })?;
        let mut new = self.current.clone();
        new.acls.retain(|a| a.service.as_deref() != Some(service));
        for (i, mut a) in acls.into_iter().enumerate() {
            match &a.service {
                Some(s) if s != service => {
                    return Err(ChangeError {
                        key: format!("[{i}].service"),
                        value: Some(format!("{s:?}")),
                        message: format!("only {service:?}'s rules can be set here"),
                    })
                }
                _ => a.service = Some(service.to_string()),
            }
            new.acls.push(a);
        }
        Ok(new)
    }

    pub fn versions(&self) -> &[VersionRecord] {
        &self.versions
    }

    /// Checks `new` and compiles it, without publishing: what [`apply`]
    /// would do. Returns the version record it would get.
    ///
    /// [`apply`]: ControlState::apply
    pub fn validate(&self, new: &Config) -> Result<VersionRecord, ChangeError> {
        let compiled = self.compile(new, &mut self.slots.clone())?;
        Ok(record(
            self.published.version() + 1,
            "validate",
            new,
            &compiled.tables,
        ))
    }

    fn compile(&self, new: &Config, slots: &mut Slots) -> Result<services::Compiled, ChangeError> {
        if new.eal != self.current.eal
            || new.interfaces != self.current.interfaces
            || new.workers != self.current.workers
        {
            return Err(ChangeError {
                key: String::new(),
                value: None,
                message: "[eal], [[interface]] and [workers] cannot change while seqd runs (restart to change them)"
                    .into(),
            });
        }
        new.validate(&self.cpus).map_err(|e| ChangeError {
            key: e.key().to_string(),
            value: e.value().map(str::to_string),
            message: e.message().to_string(),
        })?;
        services::compile_all(new, self.published.version() + 1, slots).map_err(|e| ChangeError {
            key: e.key,
            value: e.value,
            message: e.message,
        })
    }

    /// Validates, compiles, persists (with a state directory) and
    /// publishes `new` as the next version.
    pub fn apply(
        &mut self,
        new: Config,
        origin: &'static str,
    ) -> Result<VersionRecord, ChangeError> {
        let started = Instant::now();
        let mut slots = self.slots.clone();
        let compiled = self.compile(&new, &mut slots)?;
        // Kept before it is published: a reply of success means it survives a crash.
        if let Some(dir) = self
            .current
            .control
            .as_ref()
            .and_then(|c| c.state_dir.as_ref())
        {
            persist(dir, &TablesBody::persisted(&new, compiled.tables.version)).map_err(|e| {
                ChangeError {
                    key: "control.state_dir".into(),
                    value: Some(dir.display().to_string()),
                    message: format!("cannot keep the new version ({e}); nothing changed"),
                }
            })?;
        }
        // Keep what ARP already learnt, so no packet waits for it again.
        compiled
            .tables
            .neighbors
            .carry_over(&self.published.load(0).neighbors);
        let rec = record(compiled.tables.version, origin, &new, &compiled.tables);
        self.published.publish(compiled.tables);
        self.slots = slots;
        self.source.acl_info.store(Arc::new(compiled.acls));
        self.current = new;
        let took = started.elapsed();
        self.source.publish_seconds.observe(took.as_secs_f64());
        info!(
            version = rec.version,
            origin,
            publish_us = took.as_micros() as u64,
            "published version {}",
            rec.version
        );
        self.versions.push(rec.clone());
        Ok(rec)
    }

    /// Re-reads the config file (SIGHUP).
    pub fn reload_file(&mut self, path: &Path) -> Result<VersionRecord, ChangeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ChangeError {
            key: String::new(),
            value: None,
            message: format!("{}: {e}", path.display()),
        })?;
        let new = Config::parse_with_cpus(&text, &path.display().to_string(), &self.cpus).map_err(
            |e| ChangeError {
                key: String::new(),
                value: None,
                message: e.to_string(),
            },
        )?;
        self.apply(new, "sighup")
    }

    /// The running config with its tables replaced by a JSON body.
    pub fn with_tables(&self, body: &[u8]) -> Result<Config, ChangeError> {
        with_tables(&self.current, body)
    }
}
