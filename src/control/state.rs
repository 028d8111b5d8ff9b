//! The control side's one source of truth: the running config, the counter
//! slots, and the versions published so far. Every change — a SIGHUP reload
//! or a REST update — goes through [`ControlState::apply`]: validated and
//! compiled off the datapath, then published to every worker in one step, or
//! refused with the running tables left exactly as they were.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::acls::AclConfig;
use super::config::Config;
use super::edit::Changes;
use super::services::{self, ClientConfig, DeviceConfig, PoolConfig, ServiceConfig};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// "config", "sighup", "rest" or "rollback".
    pub origin: String,
    /// The request that made it ("PUT /v1/devices/fw2", "rollback to 7").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    pub service_ports: usize,
    pub devices: usize,
    pub acl_rules: usize,
}

impl VersionRecord {
    /// Version 1: the tables of the config file a fresh state directory
    /// starts with.
    pub fn seed(config: &Config) -> VersionRecord {
        VersionRecord {
            version: 1,
            time: now(),
            origin: "config".into(),
            change: None,
            service_ports: config
                .services
                .iter()
                .flat_map(|s| &s.ports)
                .map(|p| 1 + usize::from(p.protocol == services::ProtocolConfig::Both))
                .sum(),
            devices: config.devices.len(),
            acl_rules: config.acls.iter().map(|a| a.rules.len()).sum(),
        }
    }
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
    #[serde(rename = "pool", default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolConfig>,
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceConfig>,
    #[serde(rename = "acl", default)]
    pub acls: Vec<AclConfig>,
}

/// The last accepted version as kept in the state directory: the text that
/// was accepted, so a restart compiles exactly the same tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// What the version was: number, time, origin.
    #[serde(flatten)]
    pub record: VersionRecord,
    /// "json": a `/v1/tables` body; "toml": a whole config file.
    pub format: String,
    pub body: String,
}

/// Written by seqd before versions were kept one file each; read once.
const LEGACY_STATE_FILE: &str = "tables.json";
/// One file per accepted version: `versions/00000000000000000042.json`.
const VERSIONS_DIR: &str = "versions";

fn version_file(dir: &Path, version: u64) -> std::path::PathBuf {
    dir.join(VERSIONS_DIR).join(format!("{version:020}.json"))
}

/// Versions kept in `dir`, oldest first.
fn kept_versions(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir.join(VERSIONS_DIR)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let name = e?.file_name();
        if let Some(v) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(v);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes `p` into `dir` atomically — a temporary file, fsync, rename, and
/// fsync of the directory, so a crash leaves the old or the new version —
/// then removes all but the newest `keep` versions.
pub fn persist(dir: &Path, p: &Persisted, keep: usize) -> std::io::Result<()> {
    use std::io::Write;
    let vdir = dir.join(VERSIONS_DIR);
    std::fs::create_dir_all(&vdir)?;
    let tmp = vdir.join(".incoming.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(
        serde_json::to_string(p)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, version_file(dir, p.record.version))?;
    std::fs::File::open(&vdir)?.sync_all()?;
    let kept = kept_versions(dir)?;
    for &old in kept.iter().take(kept.len().saturating_sub(keep.max(1))) {
        // A version that cannot be removed is only disk space.
        let _ = std::fs::remove_file(version_file(dir, old));
    }
    Ok(())
}

/// Version `version` as kept in `dir`, if it is.
pub fn restore_version(dir: &Path, version: u64) -> std::io::Result<Option<Persisted>> {
    let path = version_file(dir, version);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last accepted version in `dir`, if there is one.
pub fn restore(dir: &Path) -> std::io::Result<Option<Persisted>> {
    if let Some(&last) = kept_versions(dir)?.last() {
        return restore_version(dir, last);
    }
    let legacy = dir.join(LEGACY_STATE_FILE);
    match std::fs::read_to_string(&legacy) {
        Ok(text) => {
            #[derive(Deserialize)]
            struct Legacy {
                version: u64,
                format: String,
                body: String,
            }
            let l: Legacy = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", legacy.display())))?;
            Ok(Some(Persisted {
                record: VersionRecord {
                    version: l.version,
                    time: 0,
                    origin: "restored".into(),
                    change: None,
                    service_ports: 0,
                    devices: 0,
                    acl_rules: 0,
                },
                format: l.format,
                body: l.body,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The records of every version kept in `dir`, oldest first (their tables
/// stay on disk).
pub fn kept_records(dir: &Path) -> std::io::Result<Vec<VersionRecord>> {
    let mut out = Vec::new();
    for v in kept_versions(dir)? {
        let path = version_file(dir, v);
        let text = std::fs::read_to_string(&path)?;
        let p: Persisted = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        out.push(p.record);
    }
    Ok(out)
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
            new.pools = whole.pools;
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
    new.pools = t.pools;
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
            pools: config.pools.clone(),
            services: config.services.clone(),
            acls: config.acls.clone(),
        }
    }

    /// As kept in the state directory.
    pub fn persisted(config: &Config, record: VersionRecord) -> Persisted {
        Persisted {
            record,
            format: "json".into(),
            body: serde_json::to_string(&TablesBody::of(config)).expect("config serializes"),
        }
    }
}

/// How many versions' tables are kept for roll-back (in memory, and in
/// the state directory) unless `control.keep_versions` says otherwise.
pub const DEFAULT_KEEP_VERSIONS: usize = 16;
/// Version records listed by `GET /v1/versions` (their tables may be gone).
const MAX_RECORDS: usize = 10_000;

/// An accepted version, and its tables while they are kept.
struct VersionEntry {
    record: VersionRecord,
    tables: Option<Arc<TablesBody>>,
}

pub struct ControlState {
    current: Config,
    slots: Slots,
    cpus: Vec<u32>,
    history: std::collections::VecDeque<VersionEntry>,
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
    origin: &str,
    change: Option<String>,
    config: &Config,
    tables: &crate::datapath::tables::Tables,
) -> VersionRecord {
    VersionRecord {
        version,
        time: now(),
        origin: origin.to_string(),
        change,
        service_ports: tables.ports.len(),
        devices: tables.devices.len(),
        acl_rules: config.acls.iter().map(|a| a.rules.len()).sum(),
    }
}

/// What [`ControlState::validate`] answers: the version a change would get
/// and what it would change.
#[derive(Debug, Clone, Serialize)]
pub struct Validated {
    #[serde(flatten)]
    pub record: VersionRecord,
    pub changes: Changes,
}

/// What an accepted change answers.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    #[serde(flatten)]
    pub record: VersionRecord,
    pub changes: Changes,
}

impl ControlState {
    /// The state of a run started with `config` (already compiled and
    /// published with `slots`). With a state directory, the versions kept
    /// there are listed too.
    pub fn new(
        config: Config,
        slots: Slots,
        cpus: Vec<u32>,
        published: Arc<Published>,
        source: StatsSource,
    ) -> Self {
        let mut history = std::collections::VecDeque::new();
        if let Some(dir) = config.control.as_ref().and_then(|c| c.state_dir.as_ref()) {
            match kept_records(dir) {
                Ok(records) => history.extend(
                    records
                        .into_iter()
                        .filter(|r| r.version < published.version())
                        .map(|record| VersionEntry {
                            record,
                            tables: None,
                        }),
                ),
                Err(e) => warn!(dir = %dir.display(), "earlier versions cannot be listed: {e}"),
            }
        }
        let first = record(
            published.version(),
            "config",
            None,
            &config,
            &published.load(0),
        );
        let in_memory = config
            .control
            .as_ref()
            .is_none_or(|c| c.state_dir.is_none());
        history.push_back(VersionEntry {
            record: first,
            tables: in_memory.then(|| Arc::new(TablesBody::of(&config))),
        });
        ControlState {
            current: config,
            slots,
            cpus,
            history,
            published,
            source,
        }
    }

    /// The running config.
    pub fn current(&self) -> &Config {
        &self.current
    }

    fn state_dir(&self) -> Option<&Path> {
        self.current
            .control
            .as_ref()
            .and_then(|c| c.state_dir.as_deref())
    }

    fn keep_versions(&self) -> usize {
        self.current
            .control
            .as_ref()
            .map_or(DEFAULT_KEEP_VERSIONS, |c| c.keep_versions)
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

    /// Every version listed, oldest first.
    pub fn versions(&self) -> Vec<VersionRecord> {
        self.history.iter().map(|e| e.record.clone()).collect()
    }

    /// Version `version`'s record and tables, from memory or the state
    /// directory. `None`: not kept (any more).
    pub fn version_tables(
        &self,
        version: u64,
    ) -> Result<Option<(VersionRecord, Arc<TablesBody>)>, ChangeError> {
        if let Some(e) = self.history.iter().find(|e| e.record.version == version) {
            if let Some(t) = &e.tables {
                return Ok(Some((e.record.clone(), Arc::clone(t))));
            }
        }
        let Some(dir) = self.state_dir() else {
            return Ok(None);
        };
        let io = |e: std::io::Error| ChangeError {
            key: "control.state_dir".into(),
            value: Some(dir.display().to_string()),
            message: format!("version {version} cannot be read: {e}"),
        };
        let Some(p) = restore_version(dir, version).map_err(io)? else {
            return Ok(None);
        };
        let config = config_from_persisted(&self.current, &p, &self.cpus)?;
        Ok(Some((p.record, Arc::new(TablesBody::of(&config)))))
    }

    /// Checks `new` and compiles it, without publishing: what [`apply`]
    /// would do, and what it would change.
    ///
    /// [`apply`]: ControlState::apply
    pub fn validate(&mut self, new: &Config) -> Result<Validated, ChangeError> {
        // Compiled on the running slots, then back to them: a copy of
        // every slot key would cost more than the compile of a small change.
        let mark = self.slots.mark();
        let mut slots = std::mem::replace(&mut self.slots, Slots::with_capacity(0, 0, 0, 0));
        let compiled = self.compile(new, &mut slots);
        slots.rollback(mark);
        self.slots = slots;
        let compiled = compiled?;
        Ok(Validated {
            record: record(
                self.published.version() + 1,
                "validate",
                None,
                new,
                &compiled.tables,
            ),
            changes: Changes::between(&self.current, new),
        })
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
        // Compiling is the whole check of the tables: everything else in
        // the config is what runs now.
        services::compile_all(new, self.published.version() + 1, slots).map_err(|e| ChangeError {
            key: e.key,
            value: e.value,
            message: e.message,
        })
    }

    /// Validates, compiles, persists (with a state directory) and
    /// publishes `new` as the next version.
    pub fn apply(&mut self, new: Config, origin: &str) -> Result<Applied, ChangeError> {
        self.apply_change(new, origin, None)
    }

    /// [`apply`](ControlState::apply), noting the request that made it.
    pub fn apply_change(
        &mut self,
        new: Config,
        origin: &str,
        change: Option<String>,
    ) -> Result<Applied, ChangeError> {
        let started = Instant::now();
        // The running slots, rolled back to `mark` if the change is refused.
        let mark = self.slots.mark();
        let mut slots = std::mem::replace(&mut self.slots, Slots::with_capacity(0, 0, 0, 0));
        let compiled = match self.compile(&new, &mut slots) {
            Ok(c) => c,
            Err(e) => {
                slots.rollback(mark);
                self.slots = slots;
                return Err(e);
            }
        };
        let compiled_at = started.elapsed();
        let rec = record(
            compiled.tables.version,
            origin,
            change,
            &new,
            &compiled.tables,
        );
        // Kept before it is published: a reply of success means it survives a crash.
        if let Some(dir) = self.state_dir() {
            if let Err(e) = persist(
                dir,
                &TablesBody::persisted(&new, rec.clone()),
                self.keep_versions(),
            ) {
                let e = ChangeError {
                    key: "control.state_dir".into(),
                    value: Some(dir.display().to_string()),
                    message: format!("cannot keep the new version ({e}); nothing changed"),
                };
                slots.rollback(mark);
                self.slots = slots;
                return Err(e);
            }
        }
        let kept_at = started.elapsed();
        // Keep what ARP already learnt, so no packet waits for it again.
        compiled
            .tables
            .neighbors
            .carry_over(&self.published.load(0).neighbors);
        self.published.publish(compiled.tables);
        self.source.acl_info.store(Arc::new(compiled.acls));
        // The workers have it from here on; what follows is for the reply.
        let took = started.elapsed();
        self.slots = slots;
        let changes = Changes::between(&self.current, &new);
        self.current = new;
        self.source.publish_seconds.observe(took.as_secs_f64());
        info!(
            version = rec.version,
            origin,
            change = rec.change.as_deref().unwrap_or(""),
            publish_us = took.as_micros() as u64,
            compile_us = compiled_at.as_micros() as u64,
            persist_us = (kept_at - compiled_at).as_micros() as u64,
            "published version {}",
            rec.version
        );
        // With a state directory the kept versions are read back from there;
        // only without one are their tables held in memory.
        let tables = self
            .state_dir()
            .is_none()
            .then(|| Arc::new(TablesBody::of(&self.current)));
        self.history.push_back(VersionEntry {
            record: rec.clone(),
            tables,
        });
        let keep = self.keep_versions();
        let with_tables = self.history.iter().filter(|e| e.tables.is_some()).count();
        for e in self
            .history
            .iter_mut()
            .filter(|e| e.tables.is_some())
            .take(with_tables.saturating_sub(keep))
        {
            e.tables = None;
        }
        while self.history.len() > MAX_RECORDS {
            self.history.pop_front();
        }
        Ok(Applied {
            record: rec,
            changes,
        })
    }

    /// Publishes the tables of version `version` again, as a new version.
    /// `Ok(None)`: that version is not kept.
    pub fn rollback(&mut self, version: u64) -> Result<Option<Applied>, ChangeError> {
        let Some((_, tables)) = self.version_tables(version)? else {
            return Ok(None);
        };
        let body = serde_json::to_vec(&*tables).expect("tables serialize");
        let new = with_tables(&self.current, &body)?;
        self.apply_change(new, "rollback", Some(format!("rollback to {version}")))
            .map(Some)
    }

    /// Re-reads the config file (SIGHUP).
    pub fn reload_file(&mut self, path: &Path) -> Result<Applied, ChangeError> {
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
