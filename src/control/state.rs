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
/// One file per accepted version: `versions/00000000000000000042.json`
/// holds the whole tables (a snapshot), `00000000000000000043.patch.json`
/// only what changed since version 42 (a journal entry).
const VERSIONS_DIR: &str = "versions";
const PATCH_SUFFIX: &str = ".patch.json";
/// A journal entry is written instead of a snapshot while fewer than this
/// many follow the last snapshot (and they are smaller than it): a change
/// writes a few hundred bytes, not the whole tables, and a restore or a
/// roll-back replays at most this many.
pub const SNAPSHOT_EVERY: usize = 64;

fn version_file(dir: &Path, version: u64) -> std::path::PathBuf {
    dir.join(VERSIONS_DIR).join(format!("{version:020}.json"))
}

fn patch_file(dir: &Path, version: u64) -> std::path::PathBuf {
    dir.join(VERSIONS_DIR)
        .join(format!("{version:020}{PATCH_SUFFIX}"))
}

/// A kept version's file: a snapshot or a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    version: u64,
    patch: bool,
}

/// Versions kept in `dir`, oldest first.
fn kept_files(dir: &Path) -> std::io::Result<Vec<Kept>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir.join(VERSIONS_DIR)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        let (stem, patch) = match name.strip_suffix(PATCH_SUFFIX) {
            Some(stem) => (Some(stem), true),
            None => (name.strip_suffix(".json"), false),
        };
        if let Some(version) = stem.and_then(|n| n.parse::<u64>().ok()) {
            out.push(Kept { version, patch });
        }
    }
    // A version written both ways (a snapshot replacing its journal entry
    // after a crash between the two) is read from its snapshot.
    out.sort_unstable_by_key(|k| (k.version, !k.patch));
    out.dedup_by_key(|k| k.version);
    Ok(out)
}

/// Versions kept in `dir` whose tables can be rebuilt, oldest first.
fn kept_versions(dir: &Path) -> std::io::Result<Vec<u64>> {
    let files = kept_files(dir)?;
    // Journal entries before the first snapshot have nothing to apply to.
    let first = files.iter().position(|k| !k.patch).unwrap_or(files.len());
    Ok(files[first..].iter().map(|k| k.version).collect())
}

fn write_synced(dir: &Path, to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let vdir = dir.join(VERSIONS_DIR);
    std::fs::create_dir_all(&vdir)?;
    let tmp = vdir.join(".incoming.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, to)?;
    std::fs::File::open(&vdir)?.sync_all()
}

/// Writes `p` (a whole-tables snapshot) into `dir` atomically — a
/// temporary file, fsync, rename, and fsync of the directory, so a crash
/// leaves the old or the new version — then removes what no longer serves
/// the newest `keep` versions.
pub fn persist(dir: &Path, p: &Persisted, keep: usize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(p).map_err(std::io::Error::other)?;
    write_synced(dir, &version_file(dir, p.record.version), &bytes)?;
    prune(dir, keep);
    Ok(())
}

/// Writes version `record.version` as a journal entry on top of the
/// version before it, as atomically as [`persist`].
fn persist_patch(
    dir: &Path,
    record: &VersionRecord,
    patch: &TablesPatch,
    keep: usize,
) -> std::io::Result<usize> {
    let bytes = serde_json::to_vec(&PersistedPatch {
        record: record.clone(),
        patch: patch.clone(),
    })
    .map_err(std::io::Error::other)?;
    write_synced(dir, &patch_file(dir, record.version), &bytes)?;
    prune(dir, keep);
    Ok(bytes.len())
}

/// Removes every file older than the snapshot the oldest of the newest
/// `keep` versions is rebuilt from. A file that cannot be removed is only
/// disk space.
fn prune(dir: &Path, keep: usize) {
    let files = match kept_files(dir) {
        Ok(f) if !f.is_empty() => f,
        _ => return,
    };
    let oldest = files.len().saturating_sub(keep.max(1));
    let Some(base) = files[..=oldest].iter().rposition(|k| !k.patch) else {
        return;
    };
    for k in &files[..base] {
        let _ = std::fs::remove_file(if k.patch {
            patch_file(dir, k.version)
        } else {
            version_file(dir, k.version)
        });
    }
}

/// A journal entry as kept in the state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersistedPatch {
    #[serde(flatten)]
    record: VersionRecord,
    patch: TablesPatch,
}

/// Version `version` as kept in `dir`, if it is: a snapshot as written,
/// or one rebuilt from the snapshot before it and the journal entries
/// since (then as a "json" body of the whole tables).
pub fn restore_version(dir: &Path, version: u64) -> std::io::Result<Option<Persisted>> {
    let files = kept_files(dir)?;
    let Some(at) = files.iter().position(|k| k.version == version) else {
        return Ok(None);
    };
    let Some(base) = files[..=at].iter().rposition(|k| !k.patch) else {
        return Ok(None);
    };
    let read = |path: std::path::PathBuf| -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let bad = |path: &Path, e: String| std::io::Error::other(format!("{}: {e}", path.display()));
    let path = version_file(dir, files[base].version);
    let Some(text) = read(path.clone())? else {
        return Ok(None);
    };
    let snapshot: Persisted = serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
    if base == at {
        return Ok(Some(snapshot));
    }
    if snapshot.format != "json" {
        return Err(bad(
            &path,
            format!("a {} snapshot cannot take journal entries", snapshot.format),
        ));
    }
    let mut tables: TablesBody =
        serde_json::from_str(&snapshot.body).map_err(|e| bad(&path, e.to_string()))?;
    let mut record = snapshot.record;
    for k in &files[base + 1..=at] {
        let path = patch_file(dir, k.version);
        let Some(text) = read(path.clone())? else {
            return Ok(None);
        };
        let p: PersistedPatch =
            serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
        p.patch.apply(&mut tables);
        record = p.record;
    }
    Ok(Some(Persisted {
        record,
        format: "json".into(),
        body: serde_json::to_string(&tables).map_err(std::io::Error::other)?,
    }))
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
    let files = kept_files(dir)?;
    let first = files.iter().position(|k| !k.patch).unwrap_or(files.len());
    let mut out = Vec::new();
    for k in &files[first..] {
        let path = if k.patch {
            patch_file(dir, k.version)
        } else {
            version_file(dir, k.version)
        };
        let text = std::fs::read_to_string(&path)?;
        // Only the record: the tables (or the patch) are skipped.
        #[derive(Deserialize)]
        struct Head {
            #[serde(flatten)]
            record: VersionRecord,
        }
        let h: Head = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        out.push(h.record);
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

/// What one version changes in the tables of the version before it: the
/// journal entry kept for it. Objects are keyed by name (ACLs by
/// interface and service); applying removes, replaces in place, then
/// appends, which is also how the REST edits change the running config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesPatch {
    /// `Some`: the client side is replaced (by `client`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    client_changed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<ClientConfig>,
    #[serde(default, skip_serializing_if = "Section::is_empty")]
    devices: Section<DeviceConfig, String>,
    #[serde(default, skip_serializing_if = "Section::is_empty")]
    pools: Section<PoolConfig, String>,
    #[serde(default, skip_serializing_if = "Section::is_empty")]
    services: Section<ServiceConfig, String>,
    #[serde(default, skip_serializing_if = "Section::is_empty")]
    acls: Section<AclConfig, (String, Option<String>)>,
}

/// The changes to one list of a [`TablesPatch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "T: Deserialize<'de>, K: Deserialize<'de>")
)]
struct Section<T, K> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<K>,
    /// New or replaced, in the new list's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    put: Vec<T>,
}

impl<T, K> Default for Section<T, K> {
    fn default() -> Self {
        Section {
            removed: Vec::new(),
            put: Vec::new(),
        }
    }
}

impl<T, K> Section<T, K> {
    fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.put.is_empty()
    }
}

trait Keyed {
    type Key: Eq + std::hash::Hash + Clone;
    fn key(&self) -> Self::Key;
}

impl Keyed for DeviceConfig {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Keyed for PoolConfig {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Keyed for ServiceConfig {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Keyed for AclConfig {
    type Key = (String, Option<String>);
    fn key(&self) -> Self::Key {
        (self.interface.clone(), self.service.clone())
    }
}

impl<T: Keyed + Clone + PartialEq> Section<T, T::Key> {
    /// What turns `old` into `new`, or None when applying it would not give
    /// `new` in the same order (a reordered or duplicated list).
    fn between(old: &[T], new: &[T]) -> Option<Self> {
        use std::collections::HashMap;
        if old.len() == new.len() && old == new {
            return Some(Section::default());
        }
        let old_at: HashMap<T::Key, usize> =
            old.iter().enumerate().map(|(i, x)| (x.key(), i)).collect();
        let new_keys: Vec<T::Key> = new.iter().map(Keyed::key).collect();
        let new_at: HashMap<&T::Key, usize> =
            new_keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        if old_at.len() != old.len() || new_at.len() != new.len() {
            return None;
        }
        let mut out = Section::default();
        // The survivors must come first in `new`, in their old order; the
        // added ones after them.
        let mut next = 0;
        for x in old {
            let k = x.key();
            match new_at.get(&k) {
                None => out.removed.push(k),
                Some(&i) if i == next => {
                    if new[i] != *x {
                        out.put.push(new[i].clone());
                    }
                    next += 1;
                }
                Some(_) => return None,
            }
        }
        for (x, k) in new[next..].iter().zip(&new_keys[next..]) {
            if old_at.contains_key(k) {
                return None;
            }
            out.put.push(x.clone());
        }
        Some(out)
    }

    fn apply(&self, list: &mut Vec<T>) {
        use std::collections::{HashMap, HashSet};
        if self.is_empty() {
            return;
        }
        let removed: HashSet<&T::Key> = self.removed.iter().collect();
        list.retain(|x| !removed.contains(&x.key()));
        let at: HashMap<T::Key, usize> =
            list.iter().enumerate().map(|(i, x)| (x.key(), i)).collect();
        for x in &self.put {
            match at.get(&x.key()) {
                Some(&i) => list[i] = x.clone(),
                None => list.push(x.clone()),
            }
        }
    }
}

impl TablesPatch {
    /// What turns the tables of `old` into those of `new`; None when that
    /// cannot be said as a patch (then a snapshot is kept instead).
    pub fn between(old: &Config, new: &Config) -> Option<TablesPatch> {
        let client_changed = old.client != new.client;
        Some(TablesPatch {
            client_changed,
            client: if client_changed {
                new.client.clone()
            } else {
                None
            },
            devices: Section::between(&old.devices, &new.devices)?,
            pools: Section::between(&old.pools, &new.pools)?,
            services: Section::between(&old.services, &new.services)?,
            acls: Section::between(&old.acls, &new.acls)?,
        })
    }

    /// Applies the patch to `t`.
    pub fn apply(&self, t: &mut TablesBody) {
        if self.client_changed {
            t.client = self.client.clone();
        }
        self.devices.apply(&mut t.devices);
        self.pools.apply(&mut t.pools);
        self.services.apply(&mut t.services);
        self.acls.apply(&mut t.acls);
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

/// Where the state directory's journal stands: what decides whether the
/// next version is kept as a journal entry or as a snapshot.
#[derive(Debug, Clone, Copy, Default)]
struct Journal {
    /// Journal entries since the last snapshot.
    entries: usize,
    /// Their bytes, and the last snapshot's.
    entry_bytes: u64,
    snapshot_bytes: u64,
}

impl Journal {
    /// As `dir` holds it. Without a snapshot there (a new or legacy state
    /// directory) the next version is written whole.
    fn of(dir: &Path) -> Journal {
        let files = kept_files(dir).unwrap_or_default();
        let Some(base) = files.iter().rposition(|k| !k.patch) else {
            return Journal {
                entries: SNAPSHOT_EVERY,
                ..Journal::default()
            };
        };
        let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        Journal {
            entries: files.len() - base - 1,
            entry_bytes: files[base + 1..]
                .iter()
                .map(|k| size(patch_file(dir, k.version)))
                .sum(),
            snapshot_bytes: size(version_file(dir, files[base].version)),
        }
    }

    fn wants_snapshot(&self) -> bool {
        self.entries + 1 >= SNAPSHOT_EVERY || self.entry_bytes >= self.snapshot_bytes
    }
}

pub struct ControlState {
    current: Config,
    journal: Journal,
    /// What the next change reuses from the running version.
    cache: services::CompileCache,
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
        let journal = config
            .control
            .as_ref()
            .and_then(|c| c.state_dir.as_deref())
            .map(Journal::of)
            .unwrap_or_default();
        ControlState {
            current: config,
            journal,
            cache: services::CompileCache::default(),
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
        let mut given = Vec::with_capacity(acls.len());
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
            given.push(Some(a));
        }
        // A set of an interface the service already has takes its place
        // (so the change is kept as a small journal entry); the others are
        // removed, and sets for new interfaces are added at the end.
        let mut new = self.current.clone();
        new.acls.retain_mut(|a| {
            if a.service.as_deref() != Some(service) {
                return true;
            }
            match given
                .iter_mut()
                .find(|g| g.as_ref().is_some_and(|g| g.interface == a.interface))
            {
                Some(g) => {
                    *a = g.take().expect("found as Some");
                    true
                }
                None => false,
            }
        });
        new.acls.extend(given.into_iter().flatten());
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
        let (compiled, _) = compiled?;
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

    fn compile(
        &self,
        new: &Config,
        slots: &mut Slots,
    ) -> Result<(services::Compiled, services::CompileCache), ChangeError> {
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
        // What the change left as it was is reused from the running
        // version: the service tables when only ACLs change, and every
        // ACL set it did not touch.
        let cur = &self.current;
        let services_unchanged = new.client == cur.client
            && new.devices == cur.devices
            && new.pools == cur.pools
            && new.services == cur.services;
        services::compile_all_cached(
            new,
            self.published.version() + 1,
            slots,
            &self.cache,
            services_unchanged,
        )
        .map_err(|e| ChangeError {
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
        let (compiled, cache) = match self.compile(&new, &mut slots) {
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
        if let Some(dir) = self.state_dir().map(Path::to_path_buf) {
            let dir = dir.as_path();
            let keep = self.keep_versions();
            // A journal entry of what changed, or now and then (and when
            // the change cannot be said as one) the whole tables.
            let patch = if self.journal.wants_snapshot() {
                None
            } else {
                TablesPatch::between(&self.current, &new)
            };
            let kept = match patch {
                Some(p) => persist_patch(dir, &rec, &p, keep).map(|bytes| Journal {
                    entries: self.journal.entries + 1,
                    entry_bytes: self.journal.entry_bytes + bytes as u64,
                    ..self.journal
                }),
                None => {
                    let whole = TablesBody::persisted(&new, rec.clone());
                    let bytes = whole.body.len() as u64;
                    persist(dir, &whole, keep).map(|()| Journal {
                        entries: 0,
                        entry_bytes: 0,
                        snapshot_bytes: bytes,
                    })
                }
            };
            match kept {
                Ok(j) => self.journal = j,
                Err(e) => {
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
        }
        let kept_at = started.elapsed();
        // Keep what ARP already learnt, so no packet waits for it again.
        let running = self.published.load(0);
        if !Arc::ptr_eq(&compiled.tables.neighbors, &running.neighbors) {
            compiled.tables.neighbors.carry_over(&running.neighbors);
        }
        drop(running);
        self.published.publish(compiled.tables);
        self.cache = cache;
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
        drop(text);
        let applied = self.apply(new, "sighup");
        // The TOML document and the compile free far more than they keep.
        crate::datapath::dpdk::release_free_heap();
        applied
    }

    /// The running config with its tables replaced by a JSON body.
    pub fn with_tables(&self, body: &[u8]) -> Result<Config, ChangeError> {
        with_tables(&self.current, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[eal]
cores = "0-1"
[workers]
lcores = [1]
[[interface]]
name = "client"
device = "net_null0"
ipv4 = "192.0.2.1/24"
[client]
interface = "client"
gateway = "192.0.2.254"
[[device]]
name = "web1"
interface = "client"
mac = "52:54:00:00:00:30"
[[service]]
name = "a"
ip = "203.0.113.10"
[[service.port]]
port = 80
hops = ["web1"]
[[service]]
name = "b"
ip = "203.0.113.11"
[[service.port]]
port = 80
hops = ["web1"]
[[service]]
name = "c"
ip = "203.0.113.12"
[[service.port]]
port = 80
hops = ["web1"]
[[acl]]
interface = "client"
service = "a"
default = "deny"
"#;

    fn base() -> Config {
        Config::parse_with_cpus(BASE, "t", &[0, 1]).unwrap()
    }

    fn patched(old: &Config, new: &Config) -> Option<TablesBody> {
        let p = TablesPatch::between(old, new)?;
        let mut t = TablesBody::of(old);
        p.apply(&mut t);
        Some(t)
    }

    fn json(t: &TablesBody) -> String {
        serde_json::to_string(t).unwrap()
    }

    #[test]
    fn a_patch_rebuilds_the_new_tables_in_their_order() {
        let old = base();
        let mut new = old.clone();
        new.services.remove(1);
        new.services[1].ports[0].port = 81;
        let mut d = new.services[0].clone();
        d.name = "d".into();
        d.ip = "203.0.113.13".parse().unwrap();
        new.services.push(d);
        new.acls[0].default = super::super::acls::ActionConfig::Allow;
        new.client.as_mut().unwrap().gateway = "192.0.2.253".parse().unwrap();
        let p = TablesPatch::between(&old, &new).unwrap();
        assert_eq!(p.services.removed, vec!["b".to_string()]);
        assert_eq!(
            p.services.put.iter().map(|s| &s.name).collect::<Vec<_>>(),
            ["c", "d"],
            "only what changed is kept"
        );
        assert!(p.devices.is_empty());
        assert_eq!(
            json(&patched(&old, &new).unwrap()),
            json(&TablesBody::of(&new))
        );
        // Nothing changed: an empty patch.
        assert_eq!(
            TablesPatch::between(&old, &old),
            Some(TablesPatch::default())
        );
    }

    #[test]
    fn a_reordered_list_is_no_patch() {
        let old = base();
        let mut new = old.clone();
        new.services.swap(0, 2);
        assert_eq!(TablesPatch::between(&old, &new), None);
        // A removed service put back at the end is a reorder too.
        let mut new = old.clone();
        let a = new.services.remove(0);
        new.services.push(a);
        assert_eq!(TablesPatch::between(&old, &new), None);
    }

    fn record(version: u64) -> VersionRecord {
        VersionRecord {
            version,
            time: 0,
            origin: "test".into(),
            change: None,
            service_ports: 0,
            devices: 0,
            acl_rules: 0,
        }
    }

    #[test]
    fn versions_are_rebuilt_from_a_snapshot_and_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let mut configs = vec![base()];
        persist(dir, &TablesBody::persisted(&configs[0], record(1)), 3).unwrap();
        for v in 2..=6u64 {
            let old = configs.last().unwrap().clone();
            let mut new = old.clone();
            new.services[0].ports[0].port = 1000 + v as u16;
            let p = TablesPatch::between(&old, &new).unwrap();
            persist_patch(dir, &record(v), &p, 3).unwrap();
            configs.push(new);
        }
        // The journal needs its snapshot: nothing is pruned yet.
        assert_eq!(kept_versions(dir).unwrap(), vec![1, 2, 3, 4, 5, 6]);
        for v in [1u64, 4, 6] {
            let p = restore_version(dir, v).unwrap().unwrap();
            assert_eq!(p.record.version, v);
            let t: TablesBody = serde_json::from_str(&p.body).unwrap();
            assert_eq!(json(&t), json(&TablesBody::of(&configs[v as usize - 1])));
        }
        assert_eq!(restore(dir).unwrap().unwrap().record.version, 6);
        assert_eq!(
            kept_records(dir)
                .unwrap()
                .iter()
                .map(|r| r.version)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        // A snapshot at 7: what only served versions before the newest 3
        // (5, 6, 7) goes, and 5 and 6 still rebuild from snapshot 1.
        persist(dir, &TablesBody::persisted(&configs[5], record(7)), 3).unwrap();
        assert_eq!(kept_versions(dir).unwrap(), vec![1, 2, 3, 4, 5, 6, 7]);
        persist(dir, &TablesBody::persisted(&configs[5], record(8)), 3).unwrap();
        persist(dir, &TablesBody::persisted(&configs[5], record(9)), 3).unwrap();
        assert_eq!(kept_versions(dir).unwrap(), vec![7, 8, 9]);
        assert!(restore_version(dir, 4).unwrap().is_none());
        assert_eq!(Journal::of(dir).entries, 0);
    }

    #[test]
    fn a_journal_entry_without_its_snapshot_is_not_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let c = base();
        persist_patch(dir, &record(5), &TablesPatch::default(), 3).unwrap();
        assert!(kept_versions(dir).unwrap().is_empty());
        assert!(restore(dir).unwrap().is_none());
        assert!(Journal::of(dir).wants_snapshot());
        persist(dir, &TablesBody::persisted(&c, record(6)), 3).unwrap();
        assert_eq!(restore(dir).unwrap().unwrap().record.version, 6);
    }
}
