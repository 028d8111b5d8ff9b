//! The seqd configuration file: typed with serde, validated once.
//!
//! seqd starts as `seqd --config FILE` or `seqd --check-config FILE`. The file
//! is TOML (see `conf/seqd.toml` and `conf/pcap-demo.toml` for commented
//! examples):
//!
//! ```toml
//! [eal]
//! cores = "0-1"             # "0-1", "0,2-3" or [0, 1]: every lcore EAL may use
//! main_lcore = 0            # optional; default: the lowest of `cores`
//! hugepages = false         # default false (--no-huge)
//! memory_mb = 256           # default 256, >= 64
//! mbufs = 8191              # default 8191, >= 1024
//! file_prefix = "seqd"      # default "seqd"
//! extra_args = []           # appended verbatim to the EAL arguments
//!
//! [[interface]]             # one or more
//! name = "client"
//! device = "0000:01:00.0"   # PCI address, or a vdev like "net_pcap0,rx_pcap=in.pcap"
//! ipv4 = "192.0.2.1/24"
//! mac = "02:00:00:00:00:01" # optional
//!
//! [workers]
//! lcores = [1]
//! burst = 32                # default 32, 1-32
//!
//! [control]                 # optional
//! listen = "127.0.0.1:8080" # default
//! ```
//!
//! # Contract
//!
//! [`Config::parse`] (and [`Config::from_file`]) deserialize with
//! `deny_unknown_fields` everywhere, then run every check in
//! [`Config::validate`] against the CPUs this process may run on. A `Config`
//! returned from them is consistent: cores exist, workers are distinct EAL
//! lcores other than the main lcore, interface names, devices and addresses are
//! unique. Nothing here panics on any input.
//!
//! Every failure is one [`ConfigError`] whose `Display` is a single line naming
//! the file, the line:column (when it can be found), the key path and the bad
//! value, e.g.
//!
//! ```text
//! conf/x.toml:7:8: interface[1].ipv4: invalid IPv4 prefix "10.0.0.1/33" (prefix length must be 0-32)
//! conf/x.toml:12:11: workers.lcores[0] = 5: core 5 does not exist (available cores: 0-1)
//! ```
//!
//! Deserialization errors take their position from toml. Validation errors are
//! found on the parsed config; their position is looked up afterwards by key
//! path in a spanned parse of the same text (only on the error path), and is
//! left out when the value was defaulted rather than written.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::acls::AclConfig;
use super::services::{compile_all, ClientConfig, DeviceConfig, PoolConfig, ServiceConfig};
use super::slots::Slots;
use crate::datapath::packet::MacAddr;

/// Default EAL memory in MB (`-m`).
pub const DEFAULT_MEMORY_MB: u32 = 256;
/// Smallest accepted `eal.memory_mb`.
pub const MIN_MEMORY_MB: u32 = 64;
/// Default mbuf pool size (a power of two minus one suits the mempool ring).
pub const DEFAULT_MBUFS: u32 = 8191;
/// Smallest accepted `eal.mbufs`.
pub const MIN_MBUFS: u32 = 1024;
/// Default `--file-prefix`.
pub const DEFAULT_FILE_PREFIX: &str = "seqd";
/// Largest (and default) rx/tx burst.
pub const MAX_BURST: usize = 32;
/// Default address of the control (REST/metrics) listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Longest interface name.
pub const MAX_NAME_LEN: usize = 32;
/// Largest core number a CPU list may name; bounds the work a range like
/// "0-4000000000" could ask for.
pub const MAX_CORE_ID: u32 = 4095;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub eal: EalConfig,
    /// `[[interface]]` sections, in file order. Missing means empty, which
    /// validation rejects with a clear message.
    #[serde(rename = "interface", default)]
    pub interfaces: Vec<InterfaceConfig>,
    pub workers: WorkersConfig,
    /// `[control]`: without it, seqd serves no REST API or metrics.
    #[serde(default)]
    pub control: Option<ControlConfig>,
    /// `[client]`: where clients are (needed once there are services).
    #[serde(default)]
    pub client: Option<ClientConfig>,
    /// `[[device]]` sections.
    #[serde(rename = "device", default)]
    pub devices: Vec<DeviceConfig>,
    /// `[[pool]]` sections: like devices that take over for each other.
    #[serde(rename = "pool", default)]
    pub pools: Vec<PoolConfig>,
    /// `[[service]]` sections.
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceConfig>,
    /// `[[acl]]` sections.
    #[serde(rename = "acl", default)]
    pub acls: Vec<AclConfig>,
}

/// `[eal]`: what `rte_eal_init` gets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// Every lcore EAL may use (`-l`), in the order written.
    #[serde(deserialize_with = "de_cores")]
    pub cores: Vec<u32>,
    /// `None`: the lowest of `cores`; see [`EalConfig::main_lcore`].
    #[serde(default)]
    pub main_lcore: Option<u32>,
    /// `false`: `--no-huge -m memory_mb`; `true`: `-m memory_mb --huge-unlink`.
    #[serde(default)]
    pub hugepages: bool,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Size of the mbuf pool.
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// Appended verbatim after seqd's own EAL arguments.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// One `[[interface]]`: a DPDK port and its own IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    /// A PCI address (`dddd:bb:dd.f` or `bb:dd.f`) or a vdev spec
    /// (`net_pcap0,rx_pcap=in.pcap`), optionally followed by `,key=value` devargs.
    pub device: String,
    /// The interface's own address and the prefix of its attached network.
    pub ipv4: Ipv4Prefix,
    /// Overrides the port's MAC address.
    #[serde(default, deserialize_with = "de_opt_mac")]
    pub mac: Option<MacAddr>,
}

/// `[workers]`: the packet-processing lcores.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    pub lcores: Vec<u32>,
    /// Packets per rx/tx burst, 1..=[`MAX_BURST`].
    #[serde(default = "default_burst")]
    pub burst: usize,
}

/// `[control]`: the REST/metrics listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_listen", deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// Where every accepted version is kept, so a restart comes back with
    /// the last one (the TOML file's tables seed an empty directory).
    #[serde(default)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Serve `/metrics` here instead of on `listen` (e.g. where the
    /// Prometheus server can reach it but the provisioning API cannot be).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer tokens allowed everything. With no token at all (admin or
    /// tenant), the API is open: keep `listen` on loopback then.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Tenants: each token sees and changes only its own services' ACLs
    /// and statistics.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantConfig>,
    /// How many versions are kept for roll-back, in memory and in
    /// `state_dir`.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
}

fn default_keep_versions() -> usize {
    super::state::DEFAULT_KEEP_VERSIONS
}

/// One `[[control.tenant]]`: a customer's API token and its services.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    pub token: String,
    pub services: Vec<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: default_listen(),
            state_dir: None,
            metrics_listen: None,
            admin_tokens: Vec::new(),
            tenants: Vec::new(),
            keep_versions: default_keep_versions(),
        }
    }
}

fn default_memory_mb() -> u32 {
    DEFAULT_MEMORY_MB
}
fn default_mbufs() -> u32 {
    DEFAULT_MBUFS
}
fn default_file_prefix() -> String {
    DEFAULT_FILE_PREFIX.to_string()
}
fn default_burst() -> usize {
    MAX_BURST
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl EalConfig {
    /// The main lcore: `main_lcore` if set, else the lowest of `cores`
    /// (0 if `cores` is empty, which validation rejects).
    pub fn main_lcore(&self) -> u32 {
        self.main_lcore
            .or_else(|| self.cores.iter().copied().min())
            .unwrap_or(0)
    }
}

impl InterfaceConfig {
    /// The device without devargs: the text before the first comma
    /// (`"net_pcap0"` for `"net_pcap0,rx_pcap=a.pcap"`).
    pub fn device_name(&self) -> &str {
        self.device.split(',').next().unwrap_or("").trim()
    }

    /// The normalized PCI address (`"0000:01:00.0"`, lowercase) if the device
    /// is a PCI address.
    pub fn pci_address(&self) -> Option<String> {
        normalize_pci(self.device_name())
    }

    /// True for anything that is not a PCI address (`net_pcap0`, `net_tap0`, ...).
    pub fn is_vdev(&self) -> bool {
        self.pci_address().is_none()
    }

    /// The name DPDK gives the port (for `rte_eth_dev_get_port_by_name`):
    /// the normalized PCI address, or the vdev name.
    pub fn port_name(&self) -> String {
        self.pci_address()
            .unwrap_or_else(|| self.device_name().to_string())
    }
}

// ---------------------------------------------------------------------------
// Ipv4Prefix
// ---------------------------------------------------------------------------

/// An address with its prefix length, `192.0.2.1/24`. The host bits are kept:
/// for an interface, `addr` is its own address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    /// `None` if `len > 32`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Prefix> {
        (len <= 32).then_some(Ipv4Prefix { addr, len })
    }

    /// The netmask as a host-order integer (`/24` -> `0xffff_ff00`).
    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.len.min(32)))
            .unwrap_or(0)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// True if `ip` is in this prefix's network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a string is not an `a.b.c.d/len` prefix; the text names the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePrefixError {
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ParsePrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid IPv4 prefix {:?} ({})", self.value, self.reason)
    }
}

impl std::error::Error for ParsePrefixError {}

impl FromStr for Ipv4Prefix {
    type Err = ParsePrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParsePrefixError {
            value: s.to_string(),
            reason,
        };
        let Some((addr, len)) = s.split_once('/') else {
            return Err(err(
                "expected address/length like 192.0.2.1/24; write /32 for a single address"
                    .to_string(),
            ));
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IPv4 address")))?;
        let len_ok = !len.is_empty() && len.len() <= 2 && len.bytes().all(|b| b.is_ascii_digit());
        match len.parse::<u8>() {
            Ok(len) if len_ok && len <= 32 => Ok(Ipv4Prefix { addr, len }),
            _ => Err(err("prefix length must be 0-32".to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expecting: "an IPv4 prefix string like \"192.0.2.1/24\"",
            parse: |s| s.parse::<Ipv4Prefix>().map_err(|e| e.to_string()),
        })
    }
}

// ---------------------------------------------------------------------------
// Deserialization helpers
// ---------------------------------------------------------------------------

/// Deserializes a string through `parse`, whose error text becomes the serde
/// error (and so names the value).
struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

pub(crate) fn de_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    d.deserialize_str(StrVisitor {
        expecting: "an IPv4 address string like \"192.0.2.1\"",
        parse: |s| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("invalid IPv4 address {s:?}"))
        },
    })
}

pub(crate) fn de_opt_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    de_ipv4(d).map(Some)
}

pub(crate) fn de_opt_mac<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
    d.deserialize_str(StrVisitor {
        expecting: "a MAC address string like \"02:00:00:00:00:01\"",
        parse: |s| s.parse::<MacAddr>().map_err(|e| e.to_string()),
    })
    .map(Some)
}

fn de_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(StrVisitor {
        expecting: "a socket address string like \"127.0.0.1:8080\"",
        parse: |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "invalid socket address {s:?} \
                     (expected IP:port like 127.0.0.1:8080 or [::1]:8080)"
                )
            })
        },
    })
}

/// `cores`: a CPU list string ("0-1", "0,2-3") or an array of core numbers.
fn de_cores<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    struct CoresVisitor;

    impl<'de> Visitor<'de> for CoresVisitor {
        type Value = Vec<u32>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a CPU list like \"0-1\" or \"0,2-3\", or an array of core numbers like [0, 1]",
            )
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u32>, E> {
            parse_cpu_list(v).map_err(E::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
            let mut cores = Vec::new();
            while let Some(core) = seq.next_element::<u32>()? {
                cores.push(core);
            }
            check_core_list(&cores).map_err(|e| {
                de::Error::custom(format!(
                    "invalid core array [{}] ({e})",
                    cores
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            Ok(cores)
        }
    }

    d.deserialize_any(CoresVisitor)
}

/// Parses a CPU list like `"0-1"`, `"0,2-3"` (spaces around items allowed)
/// into core numbers in the order written. The error text names the value.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let err = |why: String| format!("invalid CPU list {s:?} ({why})");
    let number = |t: &str| -> Result<u32, String> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{t:?} is not a core number")));
        }
        match t.parse::<u32>() {
            Ok(n) if n <= MAX_CORE_ID => Ok(n),
            _ => Err(err(format!("core {t} is above {MAX_CORE_ID}"))),
        }
    };
    let mut cores = Vec::new();
    for item in s.split(',') {
        match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(err(format!("range {lo}-{hi} is reversed")));
                }
                cores.extend(lo..=hi);
            }
            None => cores.push(number(item)?),
        }
    }
    check_core_list(&cores).map_err(err)?;
    Ok(cores)
}

/// Formats cores as a compact sorted list: `[0, 1, 2, 5]` -> `"0-2,5"`.
pub fn format_cpu_list(cores: &[u32]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// Non-empty, no core twice.
fn check_core_list(cores: &[u32]) -> Result<(), String> {
    if cores.is_empty() {
        return Err("at least one core is required".to_string());
    }
    for (i, c) in cores.iter().enumerate() {
        if cores[..i].contains(c) {
            return Err(format!("core {c} is listed twice"));
        }
    }
    Ok(())
}

/// `dddd:bb:dd.f` or `bb:dd.f` (hex; device <= 0x1f, function <= 7) ->
/// `"dddd:bb:dd.f"` lowercase; `None` for anything else.
fn normalize_pci(s: &str) -> Option<String> {
    let hex = |t: &str, n: usize| -> Option<u32> {
        (t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (hex(d, 4)?, *b, *df),
        [b, df] => (0, *b, *df),
        _ => return None,
    };
    let bus = hex(bus, 2)?;
    let (dev, func) = devfn.split_once('.')?;
    let dev = hex(dev, 2).filter(|d| *d <= 0x1f)?;
    let func = hex(func, 1).filter(|f| *f <= 7)?;
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// A vdev spec: `net_<driver>...` or `eth_<driver>...` made of
/// `[A-Za-z0-9_]`, then optional non-empty `,key=value` devargs, no spaces.
fn check_vdev(device: &str) -> Result<(), String> {
    let mut parts = device.split(',');
    let name = parts.next().unwrap_or("");
    let named = (name.starts_with("net_") || name.starts_with("eth_"))
        && name.len() > 4
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !named {
        return Err(format!(
            "{name:?} is neither a PCI address (dddd:bb:dd.f or bb:dd.f) nor a virtual device \
             (net_<driver><n>[,key=value...], e.g. net_pcap0,rx_pcap=in.pcap)"
        ));
    }
    for arg in parts {
        if arg.is_empty() || arg.chars().any(char::is_whitespace) || arg.starts_with('=') {
            return Err(format!(
                "device argument {arg:?} is malformed (expected key=value, no spaces)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A configuration error; `Display` is one line:
/// `origin[:line:col]: [key[ = value]: ]message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: String,
    line_col: Option<(usize, usize)>,
    key: String,
    value: Option<String>,
    message: String,
}

impl ConfigError {
    /// The file (or other origin) the text came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// 1-based line and column, when known.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        self.line_col
    }
    /// The key path (`interface[1].ipv4`); empty for syntax and I/O errors.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The offending value as written in TOML, for validation errors.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
    /// What is wrong, without origin and key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, col)) = self.line_col {
            write!(f, ":{line}:{col}")?;
        }
        if !self.origin.is_empty() || self.line_col.is_some() {
            f.write_str(": ")?;
        }
        if !self.key.is_empty() {
            f.write_str(&self.key)?;
            if let Some(v) = &self.value {
                write!(f, " = {v}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One validation check over the whole config and the available CPUs.
type Check = fn(&Config, &[u32]) -> Result<(), Invalid>;

/// A failed check: key path, value (as TOML) and message.
struct Invalid {
    key: String,
    value: Option<String>,
    message: String,
}

fn invalid(
    key: impl Into<String>,
    value: impl fmt::Display,
    message: impl Into<String>,
) -> Invalid {
    Invalid {
        key: key.into(),
        value: Some(value.to_string()),
        message: message.into(),
    }
}

/// A string as a TOML basic string (quoted, escaped).
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Collapses a possibly multi-line toml message onto one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates `path` against this process's CPU affinity.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line_col: None,
            key: String::new(),
            value: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::parse(&text, &origin)
    }

    /// Parses and validates `text` against this process's CPU affinity;
    /// `origin` (usually the file name) starts every error line.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_with_cpus(text, origin, &available_cpus())
    }

    /// Parses and validates `text` as if the CPUs `available_cpus` were the
    /// only ones this process may run on.
    pub fn parse_with_cpus(
        text: &str,
        origin: &str,
        available_cpus: &[u32],
    ) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = if e.path().iter().next().is_some() {
                e.path().to_string()
            } else {
                String::new()
            };
            let inner = e.into_inner();
            ConfigError {
                origin: origin.to_string(),
                line_col: inner.span().map(|s| line_col(text, s.start)),
                key,
                value: None,
                message: one_line(inner.message()),
            }
        })?;
        config.check(available_cpus).map_err(|bad| ConfigError {
            origin: origin.to_string(),
            line_col: locate(text, &bad.key).map(|s| line_col(text, s.start)),
            key: bad.key,
            value: bad.value,
            message: bad.message,
        })?;
        Ok(config)
    }

    /// Runs every check on an already built config (as [`Config::parse`]
    /// does); errors carry no origin or position.
    pub fn validate(&self, available_cpus: &[u32]) -> Result<(), ConfigError> {
        self.check(available_cpus).map_err(|bad| ConfigError {
            origin: String::new(),
            line_col: None,
            key: bad.key,
            value: bad.value,
            message: bad.message,
        })
    }

    /// Runs [`Config::CHECKS`] in order; the first failure is reported.
    fn check(&self, cpus: &[u32]) -> Result<(), Invalid> {
        Self::CHECKS.iter().try_for_each(|check| check(self, cpus))
    }

    /// Every check, in the order they run. Each gets the available CPUs.
    const CHECKS: &'static [Check] = &[
        Config::check_eal,
        Config::check_workers,
        Config::check_interfaces,
        Config::check_control,
        Config::check_services,
    ];

    /// Compiles services and devices once, to catch what only the compiler sees.
    fn check_services(&self, _cpus: &[u32]) -> Result<(), Invalid> {
        if self.client.is_none()
            && self.devices.is_empty()
            && self.services.is_empty()
            && self.acls.is_empty()
        {
            return Ok(());
        }
        let mut slots = Slots::with_capacity(usize::MAX, usize::MAX, usize::MAX, usize::MAX);
        compile_all(self, 0, &mut slots)
            .map(|_| ())
            .map_err(|e| Invalid {
                key: e.key,
                value: e.value,
                message: e.message,
            })
    }

    fn check_eal(&self, cpus: &[u32]) -> Result<(), Invalid> {
        let eal = &self.eal;
        let cores_value = || quoted(&format_cpu_list(&eal.cores));
        if eal.cores.is_empty() {
            return Err(invalid("eal.cores", "[]", "at least one core is required"));
        }
        check_core_list(&eal.cores).map_err(|e| invalid("eal.cores", cores_value(), e))?;
        if let Some(c) = eal.cores.iter().find(|c| !cpus.contains(c)) {
            return Err(invalid("eal.cores", cores_value(), missing_core(*c, cpus)));
        }
        if let Some(main) = eal.main_lcore {
            if !eal.cores.contains(&main) {
                return Err(invalid(
                    "eal.main_lcore",
                    main,
                    format!(
                        "lcore {main} is not in eal.cores ({})",
                        format_cpu_list(&eal.cores)
                    ),
                ));
            }
        }
        if eal.memory_mb < MIN_MEMORY_MB {
            return Err(invalid(
                "eal.memory_mb",
                eal.memory_mb,
                format!("must be at least {MIN_MEMORY_MB} (MB)"),
            ));
        }
        if eal.mbufs < MIN_MBUFS {
            return Err(invalid(
                "eal.mbufs",
                eal.mbufs,
                format!("must be at least {MIN_MBUFS}"),
            ));
        }
        let prefix_ok = !eal.file_prefix.is_empty()
            && eal
                .file_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(invalid(
                "eal.file_prefix",
                quoted(&eal.file_prefix),
                "must be non-empty and use only A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        Ok(())
    }

    fn check_workers(&self, cpus: &[u32]) -> Result<(), Invalid> {
        let w = &self.workers;
        let main = self.eal.main_lcore();
        if w.lcores.is_empty() {
            return Err(invalid(
                "workers.lcores",
                "[]",
                "at least one worker lcore is required",
            ));
        }
        for (i, &lc) in w.lcores.iter().enumerate() {
            let key = format!("workers.lcores[{i}]");
            if !cpus.contains(&lc) {
                return Err(invalid(key, lc, missing_core(lc, cpus)));
            }
            if !self.eal.cores.contains(&lc) {
                return Err(invalid(
                    key,
                    lc,
                    format!(
                        "lcore {lc} is not in eal.cores ({}); add it there",
                        format_cpu_list(&self.eal.cores)
                    ),
                ));
            }
            if lc == main {
                let why = if self.eal.main_lcore.is_some() {
                    "eal.main_lcore"
                } else {
                    "eal.main_lcore defaults to the lowest of eal.cores"
                };
                return Err(invalid(
                    key,
                    lc,
                    format!(
                        "lcore {lc} is the main lcore ({why}); workers need lcores of their own"
                    ),
                ));
            }
            if let Some(j) = w.lcores[..i].iter().position(|&o| o == lc) {
                return Err(invalid(
                    key,
                    lc,
                    format!("lcore {lc} is already listed as workers.lcores[{j}]"),
                ));
            }
        }
        if !(1..=MAX_BURST).contains(&w.burst) {
            return Err(invalid(
                "workers.burst",
                w.burst,
                format!("must be 1-{MAX_BURST}"),
            ));
        }
        Ok(())
    }

    fn check_interfaces(&self, _cpus: &[u32]) -> Result<(), Invalid> {
        if self.interfaces.is_empty() {
            return Err(Invalid {
                key: "interface".to_string(),
                value: None,
                message: "at least one [[interface]] section is required".to_string(),
            });
        }
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let key = |field: &str| format!("interface[{i}].{field}");
            let earlier = &self.interfaces[..i];
            let used_by = |j: usize| format!("interface[{j}] ({:?})", self.interfaces[j].name);

            // name
            let name = &ifc.name;
            if name.is_empty()
                || name.len() > MAX_NAME_LEN
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    key("name"),
                    quoted(name),
                    format!("names are 1-{MAX_NAME_LEN} characters of a-z, 0-9, '_' and '-'"),
                ));
            }
            if let Some(j) = earlier.iter().position(|o| o.name == *name) {
                return Err(invalid(
                    key("name"),
                    quoted(name),
                    format!("name is already used by interface[{j}]"),
                ));
            }

            // device
            let dev_name = ifc.device_name();
            if dev_name.contains(':') {
                if ifc.pci_address().is_none() {
                    return Err(invalid(
                        key("device"),
                        quoted(&ifc.device),
                        format!(
                            "{dev_name:?} is not a valid PCI address (expected dddd:bb:dd.f \
                             or bb:dd.f, hex, device <= 1f, function <= 7)"
                        ),
                    ));
                }
            } else {
                check_vdev(&ifc.device)
                    .map_err(|e| invalid(key("device"), quoted(&ifc.device), e))?;
            }
            let port = ifc.port_name().to_ascii_lowercase();
            if let Some(j) = earlier
                .iter()
                .position(|o| o.port_name().to_ascii_lowercase() == port)
            {
                return Err(invalid(
                    key("device"),
                    quoted(&ifc.device),
                    format!("device {dev_name} is already used by {}", used_by(j)),
                ));
            }

            // ipv4
            let addr = ifc.ipv4.addr;
            if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
                return Err(invalid(
                    key("ipv4"),
                    quoted(&ifc.ipv4.to_string()),
                    format!(
                        "{addr} cannot be an interface address \
                         (unspecified, multicast or broadcast)"
                    ),
                ));
            }
            if ifc.ipv4.len > 32 {
                return Err(invalid(
                    key("ipv4"),
                    quoted(&ifc.ipv4.to_string()),
                    "prefix length must be 0-32",
                ));
            }
            if let Some(j) = earlier.iter().position(|o| o.ipv4.addr == addr) {
                return Err(invalid(
                    key("ipv4"),
                    quoted(&ifc.ipv4.to_string()),
                    format!("address {addr} is already used by {}", used_by(j)),
                ));
            }

            // mac
            if let Some(mac) = ifc.mac {
                if mac == MacAddr::ZERO || mac.is_multicast() {
                    let kind = if mac == MacAddr::ZERO {
                        "all-zero"
                    } else {
                        "multicast"
                    };
                    return Err(invalid(
                        key("mac"),
                        quoted(&mac.to_string()),
                        format!("a MAC override must be a unicast address, this one is {kind}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_control(&self, _cpus: &[u32]) -> Result<(), Invalid> {
        let Some(c) = &self.control else {
            return Ok(());
        };
        let mut seen = std::collections::HashSet::new();
        for (i, t) in c.admin_tokens.iter().enumerate() {
            if t.len() < 16 || !seen.insert(t.as_str()) {
                return Err(invalid(
                    format!("control.admin_tokens[{i}]"),
                    "\"…\"",
                    "tokens must be unique and at least 16 characters",
                ));
            }
        }
        // Tenants may name many services: a set, not a scan per name.
        let names: std::collections::HashSet<&str> = if c.tenants.is_empty() {
            Default::default()
        } else {
            self.services.iter().map(|s| s.name.as_str()).collect()
        };
        for (i, t) in c.tenants.iter().enumerate() {
            if t.token.len() < 16 || !seen.insert(t.token.as_str()) {
                return Err(invalid(
                    format!("control.tenant[{i}].token"),
                    "\"…\"",
                    "tokens must be unique and at least 16 characters",
                ));
            }
            for (j, s) in t.services.iter().enumerate() {
                if !names.contains(s.as_str()) {
                    return Err(invalid(
                        format!("control.tenant[{i}].services[{j}]"),
                        quoted(s),
                        "no [[service]] has this name",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The argv for `rte_eal_init`:
    /// `seqd -l CORES --main-lcore M --file-prefix P <memory> <devices> [--no-pci] <extra_args>`,
    /// where memory is `--no-huge -m MB` or `-m MB --huge-unlink`, and each
    /// interface adds `--vdev DEVICE` or `-a DEVICE` (devargs included).
    pub fn eal_args(&self) -> Vec<String> {
        let eal = &self.eal;
        let mut args: Vec<String> = vec![
            "seqd".into(),
            "-l".into(),
            format_cpu_list(&eal.cores),
            "--main-lcore".into(),
            eal.main_lcore().to_string(),
            "--file-prefix".into(),
            eal.file_prefix.clone(),
        ];
        let mb = eal.memory_mb.to_string();
        if eal.hugepages {
            args.extend(["-m".into(), mb, "--huge-unlink".into()]);
        } else {
            args.extend(["--no-huge".into(), "-m".into(), mb]);
        }
        for ifc in &self.interfaces {
            let flag = if ifc.is_vdev() { "--vdev" } else { "-a" };
            args.extend([flag.to_string(), ifc.device.clone()]);
        }
        if self.interfaces.iter().all(InterfaceConfig::is_vdev) {
            args.push("--no-pci".into());
        }
        args.extend(eal.extra_args.iter().cloned());
        args
    }
}

fn missing_core(core: u32, cpus: &[u32]) -> String {
    format!(
        "core {core} does not exist (available cores: {})",
        format_cpu_list(cpus)
    )
}

/// The CPUs this process may run on (its affinity mask); falls back to
/// `0..available_parallelism` if the mask cannot be read.
pub fn available_cpus() -> Vec<u32> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    if let Ok(set) = sched_getaffinity(Pid::from_raw(0)) {
        let cpus: Vec<u32> = (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        if !cpus.is_empty() {
            return cpus;
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..u32::try_from(n).unwrap_or(1)).collect()
}

// ---------------------------------------------------------------------------
// Finding a key path's position (for validation errors)
// ---------------------------------------------------------------------------

/// A TOML value with the spans of its parts, just enough to find a key path.
enum Node {
    Table(BTreeMap<String, toml::Spanned<Node>>),
    Array(Vec<toml::Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut table = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, toml::Spanned<Node>>()? {
                    table.insert(k, v);
                }
                Ok(Node::Table(table))
            }
        }

        d.deserialize_any(NodeVisitor)
    }
}

/// The byte span of the value at `key` (`interface[1].ipv4`, `workers.lcores[0]`)
/// in `text`; `None` if it is not written there (defaulted) or not found.
fn locate(text: &str, key: &str) -> Option<Range<usize>> {
    let root: Node = toml::from_str(text).ok()?;
    let mut node = &root;
    let mut span = None;
    for part in key.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            let Node::Table(table) = node else {
                return None;
            };
            let child = table.get(name)?;
            span = Some(child.span());
            node = child.get_ref();
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (index, tail) = r.split_once(']')?;
            let Node::Array(items) = node else {
                return None;
            };
            let child = items.get(index.parse::<usize>().ok()?)?;
            span = Some(child.span());
            node = child.get_ref();
            rest = tail;
        }
    }
    span
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const CPUS: &[u32] = &[0, 1, 2, 3];

    /// A valid config; tests replace one line of it.
    const BASE: &str = r#"[eal]
cores = "0-2"

[[interface]]
name = "client"
device = "net_pcap0,rx_pcap=a.pcap"
ipv4 = "10.0.0.1/24"

[[interface]]
name = "devices"
device = "net_pcap1,rx_pcap=b.pcap"
ipv4 = "10.0.1.1/24"

[workers]
lcores = [1, 2]
"#;

    fn with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "BASE lacks {from:?}");
        BASE.replacen(from, to, 1)
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_cpus(text, "x.toml", CPUS)
    }

    /// The error line for `text`; asserts it is one line starting with the
    /// origin and containing each of `needles`.
    fn err(text: &str, needles: &[&str]) -> ConfigError {
        let e = match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let line = e.to_string();
        assert!(!line.contains('\n'), "multi-line error: {line}");
        assert!(line.starts_with("x.toml"), "{line}");
        for n in needles {
            assert!(line.contains(n), "{line:?} lacks {n:?}");
        }
        e
    }

    #[test]
    fn base_is_valid() {
        parse(BASE).unwrap();
    }

    #[test]
    fn full_config_round_trip() {
        let text = r#"
[eal]
cores = [0, 1, 2, 3]
main_lcore = 3
hugepages = true
memory_mb = 1024
mbufs = 65535
file_prefix = "seqd-a_1"
extra_args = ["--log-level", "lib.eal:debug"]

[[interface]]
name = "client"
device = "0000:01:00.0"
ipv4 = "192.0.2.1/24"
mac = "02:00:00:00:00:01"

[[interface]]
name = "dev-1"
device = "02:00.1,txq_inline=128"
ipv4 = "198.51.100.1/30"

[workers]
lcores = [1, 0]
burst = 16

[control]
listen = "0.0.0.0:9000"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.eal.cores, vec![0, 1, 2, 3]);
        assert_eq!(c.eal.main_lcore, Some(3));
        assert_eq!(c.eal.main_lcore(), 3);
        assert!(c.eal.hugepages);
        assert_eq!(c.eal.memory_mb, 1024);
        assert_eq!(c.eal.mbufs, 65535);
        assert_eq!(c.eal.file_prefix, "seqd-a_1");
        assert_eq!(c.eal.extra_args, vec!["--log-level", "lib.eal:debug"]);
        assert_eq!(c.interfaces.len(), 2);
        let (a, b) = (&c.interfaces[0], &c.interfaces[1]);
        assert_eq!(a.name, "client");
        assert_eq!(a.device, "0000:01:00.0");
        assert_eq!(a.device_name(), "0000:01:00.0");
        assert!(!a.is_vdev());
        assert_eq!(
            a.ipv4,
            Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, 1), 24).unwrap()
        );
        assert_eq!(a.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(b.name, "dev-1");
        assert_eq!(b.device_name(), "02:00.1");
        assert_eq!(b.pci_address().as_deref(), Some("0000:02:00.1"));
        assert_eq!(b.port_name(), "0000:02:00.1");
        assert_eq!(b.ipv4.to_string(), "198.51.100.1/30");
        assert_eq!(b.mac, None);
        assert_eq!(c.workers.lcores, vec![1, 0]);
        assert_eq!(c.workers.burst, 16);
        assert_eq!(c.control.unwrap().listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.eal.cores, vec![0, 1, 2]);
        assert_eq!(c.eal.main_lcore, None);
        assert_eq!(c.eal.main_lcore(), 0);
        assert!(!c.eal.hugepages);
        assert_eq!(c.eal.memory_mb, DEFAULT_MEMORY_MB);
        assert_eq!(c.eal.mbufs, DEFAULT_MBUFS);
        assert_eq!(c.eal.file_prefix, "seqd");
        assert!(c.eal.extra_args.is_empty());
        assert_eq!(c.workers.burst, 32);
        assert!(c.control.is_none(), "no [control]: nothing is served");
        assert_eq!(c.interfaces[0].device_name(), "net_pcap0");
        assert!(c.interfaces[0].is_vdev());
        assert_eq!(c.interfaces[0].port_name(), "net_pcap0");
        // An empty [control] section also takes the default.
        let c = parse(&format!("{BASE}\n[control]\n")).unwrap();
        assert_eq!(c.control.unwrap().listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn eal_args_vdev_only() {
        let c = parse(&with(
            "cores = \"0-2\"",
            "cores = \"0-2\"\nextra_args = [\"--log-level\", \"lib.eal:debug\"]",
        ))
        .unwrap();
        assert_eq!(
            c.eal_args(),
            [
                "seqd",
                "-l",
                "0-2",
                "--main-lcore",
                "0",
                "--file-prefix",
                "seqd",
                "--no-huge",
                "-m",
                "256",
                "--vdev",
                "net_pcap0,rx_pcap=a.pcap",
                "--vdev",
                "net_pcap1,rx_pcap=b.pcap",
                "--no-pci",
                "--log-level",
                "lib.eal:debug",
            ]
        );
    }

    #[test]
    fn eal_args_pci() {
        let text = r#"
[eal]
cores = "0,2-3"
main_lcore = 2
hugepages = true
memory_mb = 2048
file_prefix = "prod"
[[interface]]
name = "client"
device = "0000:01:00.0"
ipv4 = "192.0.2.1/24"
[[interface]]
name = "tap"
device = "net_tap0,iface=seqd0"
ipv4 = "192.0.3.1/24"
[workers]
lcores = [3, 0]
"#;
        let c = parse(text).unwrap();
        assert_eq!(
            c.eal_args(),
            [
                "seqd",
                "-l",
                "0,2-3",
                "--main-lcore",
                "2",
                "--file-prefix",
                "prod",
                "-m",
                "2048",
                "--huge-unlink",
                "-a",
                "0000:01:00.0",
                "--vdev",
                "net_tap0,iface=seqd0",
            ]
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list(" 1 , 3 ").unwrap(), vec![1, 3]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        for bad in [
            "",
            "1-0",
            "x",
            "0-",
            "-1",
            "0,,1",
            "1-2-3",
            "0,0",
            "0-1,1",
            "99999",
            "0-4000000000",
            "+1",
        ] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
        assert!(parse_cpu_list("1-0").unwrap_err().contains("reversed"));
        assert_eq!(format_cpu_list(&[3, 0, 1, 2, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(format_cpu_list(&[]), "");
        // Through the config, as string and as array.
        let c = parse(&with("cores = \"0-2\"", "cores = \"0,1-2\"")).unwrap();
        assert_eq!(c.eal.cores, vec![0, 1, 2]);
        let c = parse(&with("cores = \"0-2\"", "cores = [0, 1, 2]")).unwrap();
        assert_eq!(c.eal.cores, vec![0, 1, 2]);
    }

    #[test]
    fn bad_cores_are_parse_errors() {
        let e = err(
            &with("cores = \"0-2\"", "cores = \"2-0\""),
            &["x.toml:2:9:", "eal.cores", "\"2-0\"", "reversed"],
        );
        assert_eq!(e.line_col(), Some((2, 9)));
        err(
            &with("cores = \"0-2\"", "cores = \"x\""),
            &["x.toml:2:", "eal.cores", "\"x\"", "not a core number"],
        );
        err(
            &with("cores = \"0-2\"", "cores = [0, 0]"),
            &["x.toml:2:", "eal.cores", "[0, 0]", "core 0 is listed twice"],
        );
        err(
            &with("cores = \"0-2\"", "cores = []"),
            &["x.toml:2:", "eal.cores", "at least one core"],
        );
        err(
            &with("cores = \"0-2\"", "cores = 3"),
            &["x.toml:2:9:", "eal.cores", "integer `3`"],
        );
        err(
            &with("cores = \"0-2\"", "cores = [0, -1]"),
            &["x.toml:2:", "eal.cores[1]", "-1"],
        );
    }

    #[test]
    fn wrong_type() {
        let e = err(
            &with("lcores = [1, 2]", "lcores = [1, 2]\nburst = \"many\""),
            &["x.toml:16:9:", "workers.burst", "\"many\""],
        );
        assert_eq!(e.key(), "workers.burst");
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nhugepages = \"yes\""),
            &["x.toml:3:13:", "eal.hugepages", "\"yes\""],
        );
        err(
            &with("name = \"client\"", "name = 7"),
            &["x.toml:5:8:", "interface[0].name", "7"],
        );
    }

    #[test]
    fn unknown_keys() {
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nhuge = true"),
            &["x.toml:3:", "eal", "huge"],
        );
        err(
            &with("name = \"devices\"", "name = \"devices\"\nvlan = 5"),
            &["x.toml:11:", "interface[1]", "vlan"],
        );
        err(&format!("{BASE}[bogus]\nx = 1\n"), &["x.toml:", "bogus"]);
        err(
            &format!("{BASE}[control]\nport = 1\n"),
            &["x.toml:", "control", "port"],
        );
    }

    #[test]
    fn syntax_error_is_one_line() {
        let e = err(&with("cores = \"0-2\"", "cores = \"0-2"), &["x.toml:2:"]);
        assert_eq!(e.key(), "");
        err("[eal\n", &["x.toml:1:"]);
        err("", &["x.toml", "missing field `eal`"]);
    }

    #[test]
    fn bad_prefix() {
        let e = err(&with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"10.0.0.1/33\""), &[
            "x.toml:12:8: interface[1].ipv4: invalid IPv4 prefix \"10.0.0.1/33\" (prefix length must be 0-32)",
        ]);
        assert_eq!(e.line_col(), Some((12, 8)));
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"10.0.1.1\""),
            &["x.toml:12:8:", "interface[1].ipv4", "\"10.0.1.1\"", "/32"],
        );
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"10.0.1.256/24\""),
            &["x.toml:12:8:", "interface[1].ipv4", "10.0.1.256"],
        );
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"10.0.1.1/+4\""),
            &["interface[1].ipv4", "10.0.1.1/+4"],
        );
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"0.0.0.0/0\""),
            &[
                "x.toml:12:8:",
                "interface[1].ipv4 = \"0.0.0.0/0\"",
                "cannot be an interface address",
            ],
        );
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"224.0.0.1/4\""),
            &["interface[1].ipv4 = \"224.0.0.1/4\"", "cannot be"],
        );
    }

    #[test]
    fn bad_mac() {
        err(
            &with(
                "ipv4 = \"10.0.0.1/24\"",
                "ipv4 = \"10.0.0.1/24\"\nmac = \"02:00:00:00:00\"",
            ),
            &["x.toml:8:7:", "interface[0].mac", "\"02:00:00:00:00\""],
        );
        err(
            &with(
                "ipv4 = \"10.0.0.1/24\"",
                "ipv4 = \"10.0.0.1/24\"\nmac = \"01:00:5e:00:00:01\"",
            ),
            &[
                "x.toml:8:7:",
                "interface[0].mac = \"01:00:5e:00:00:01\"",
                "multicast",
            ],
        );
        err(
            &with(
                "ipv4 = \"10.0.0.1/24\"",
                "ipv4 = \"10.0.0.1/24\"\nmac = \"00:00:00:00:00:00\"",
            ),
            &[
                "x.toml:8:7:",
                "interface[0].mac = \"00:00:00:00:00:00\"",
                "all-zero",
            ],
        );
        err(
            &with(
                "ipv4 = \"10.0.0.1/24\"",
                "ipv4 = \"10.0.0.1/24\"\nmac = \"ff:ff:ff:ff:ff:ff\"",
            ),
            &["interface[0].mac = \"ff:ff:ff:ff:ff:ff\"", "multicast"],
        );
    }

    #[test]
    fn bad_socket_address() {
        err(
            &format!("{BASE}[control]\nlisten = \"localhost\"\n"),
            &["x.toml:17:10:", "control.listen", "\"localhost\""],
        );
        err(
            &format!("{BASE}[control]\nlisten = \"127.0.0.1:99999\"\n"),
            &["control.listen", "127.0.0.1:99999"],
        );
    }

    #[test]
    fn missing_core() {
        let e = Config::parse_with_cpus(BASE, "x.toml", &[0, 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.toml:2:9: eal.cores = \"0-2\": core 2 does not exist (available cores: 0-1)"
        );
        let text = with("lcores = [1, 2]", "lcores = [1, 5]");
        err(
            &text.replace("cores = \"0-2\"", "cores = \"0-3\""),
            &["x.toml:15:14: workers.lcores[1] = 5: core 5 does not exist (available cores: 0-3)"],
        );
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nmain_lcore = 3"),
            &[
                "x.toml:3:14:",
                "eal.main_lcore = 3",
                "not in eal.cores (0-2)",
            ],
        );
    }

    #[test]
    fn worker_not_in_eal_cores() {
        err(
            &with("lcores = [1, 2]", "lcores = [1, 3]"),
            &[
                "x.toml:15:14:",
                "workers.lcores[1] = 3",
                "not in eal.cores (0-2)",
            ],
        );
    }

    #[test]
    fn worker_is_main_lcore() {
        err(
            &with("lcores = [1, 2]", "lcores = [0, 1]"),
            &[
                "x.toml:15:11:",
                "workers.lcores[0] = 0",
                "main lcore",
                "defaults",
            ],
        );
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nmain_lcore = 2"),
            &[
                "workers.lcores[1] = 2",
                "is the main lcore (eal.main_lcore)",
            ],
        );
    }

    #[test]
    fn duplicate_worker() {
        err(
            &with("lcores = [1, 2]", "lcores = [1, 2, 1]"),
            &[
                "x.toml:15:17:",
                "workers.lcores[2] = 1",
                "already listed as workers.lcores[0]",
            ],
        );
    }

    #[test]
    fn empty_lists() {
        err(
            &with("lcores = [1, 2]", "lcores = []"),
            &[
                "x.toml:15:10:",
                "workers.lcores = []",
                "at least one worker",
            ],
        );
        let no_ifaces = "[eal]\ncores = \"0-1\"\n[workers]\nlcores = [1]\n";
        err(
            no_ifaces,
            &["x.toml: interface: at least one [[interface]]"],
        );
        err(
            &format!("interface = []\n{no_ifaces}"),
            &["x.toml:1:13: interface: at least one"],
        );
    }

    #[test]
    fn burst_range() {
        err(
            &with("lcores = [1, 2]", "lcores = [1, 2]\nburst = 0"),
            &["x.toml:16:9:", "workers.burst = 0", "1-32"],
        );
        err(
            &with("lcores = [1, 2]", "lcores = [1, 2]\nburst = 33"),
            &["workers.burst = 33", "1-32"],
        );
        err(
            &with("lcores = [1, 2]", "lcores = [1, 2]\nburst = -1"),
            &["x.toml:16:9:", "workers.burst", "-1"],
        );
    }

    #[test]
    fn too_small() {
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nmemory_mb = 32"),
            &["x.toml:3:13:", "eal.memory_mb = 32", "at least 64"],
        );
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nmbufs = 1000"),
            &["x.toml:3:9:", "eal.mbufs = 1000", "at least 1024"],
        );
        // Large but legal sizes are accepted.
        parse(&with(
            "cores = \"0-2\"",
            "cores = \"0-2\"\nmbufs = 4000000\nmemory_mb = 64",
        ))
        .unwrap();
    }

    #[test]
    fn bad_characters() {
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nfile_prefix = \"a/b\""),
            &["x.toml:3:15:", "eal.file_prefix = \"a/b\"", "A-Z"],
        );
        err(
            &with("cores = \"0-2\"", "cores = \"0-2\"\nfile_prefix = \"\""),
            &["eal.file_prefix = \"\""],
        );
        err(
            &with("name = \"client\"", "name = \"Client\""),
            &["x.toml:5:8:", "interface[0].name = \"Client\"", "a-z"],
        );
        err(
            &with("name = \"client\"", "name = \"\""),
            &["interface[0].name = \"\""],
        );
        let long = "a".repeat(33);
        err(
            &with("name = \"client\"", &format!("name = \"{long}\"")),
            &["interface[0].name", &long, "1-32"],
        );
        parse(&with(
            "name = \"client\"",
            &format!("name = \"{}\"", &long[1..]),
        ))
        .unwrap();
    }

    #[test]
    fn duplicate_names() {
        err(
            &with("name = \"devices\"", "name = \"client\""),
            &[
                "x.toml:10:8:",
                "interface[1].name = \"client\"",
                "already used by interface[0]",
            ],
        );
    }

    #[test]
    fn duplicate_devices() {
        err(&with("device = \"net_pcap1,rx_pcap=b.pcap\"", "device = \"net_pcap0,rx_pcap=b.pcap\""), &[
            "x.toml:11:10: interface[1].device = \"net_pcap0,rx_pcap=b.pcap\": device net_pcap0 is already used by interface[0] (\"client\")",
        ]);
        // PCI: short and full forms, any case, are the same device.
        let text = with(
            "device = \"net_pcap0,rx_pcap=a.pcap\"",
            "device = \"0000:0A:00.0\"",
        )
        .replace(
            "device = \"net_pcap1,rx_pcap=b.pcap\"",
            "device = \"0a:00.0,txq_inline=0\"",
        );
        err(
            &text,
            &[
                "interface[1].device = \"0a:00.0,txq_inline=0\"",
                "device 0a:00.0 is already used by interface[0] (\"client\")",
            ],
        );
    }

    #[test]
    fn bad_devices() {
        for bad in ["0000:01:00.8", "01:20.0", "1:00.0", "0000:01:00", "zz:00.0"] {
            err(
                &with(
                    "device = \"net_pcap1,rx_pcap=b.pcap\"",
                    &format!("device = \"{bad}\""),
                ),
                &[
                    "x.toml:11:10:",
                    "interface[1].device",
                    bad,
                    "not a valid PCI address",
                ],
            );
        }
        for bad in [
            "eth0",
            "net_",
            "pcap0",
            "net_pcap0,,x=1",
            "net_pcap0, rx_pcap=a",
            "net pcap0",
            "",
        ] {
            err(
                &with(
                    "device = \"net_pcap1,rx_pcap=b.pcap\"",
                    &format!("device = \"{bad}\""),
                ),
                &["x.toml:11:10:", "interface[1].device", bad],
            );
        }
    }

    #[test]
    fn duplicate_addresses() {
        err(
            &with("ipv4 = \"10.0.1.1/24\"", "ipv4 = \"10.0.0.1/16\""),
            &[
                "x.toml:12:8:",
                "interface[1].ipv4 = \"10.0.0.1/16\"",
                "address 10.0.0.1 is already used by interface[0] (\"client\")",
            ],
        );
    }

    #[test]
    fn prefix_type() {
        let p: Ipv4Prefix = "192.0.2.77/24".parse().unwrap();
        assert_eq!(p.addr, Ipv4Addr::new(192, 0, 2, 77));
        assert_eq!(p.len, 24);
        assert_eq!(p.network(), Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(p.mask(), 0xffff_ff00);
        assert!(p.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!p.contains(Ipv4Addr::new(192, 0, 3, 1)));
        assert_eq!(p.to_string(), "192.0.2.77/24");
        let all: Ipv4Prefix = "10.1.2.3/0".parse().unwrap();
        assert_eq!(all.network(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let host: Ipv4Prefix = "10.1.2.3/32".parse().unwrap();
        assert!(host.contains(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(!host.contains(Ipv4Addr::new(10, 1, 2, 4)));
        for bad in [
            "10.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/33",
            "10.0.0.1/-1",
            "10.0.0.1/024",
            "x/24",
            "10.0.0/24",
            "/24",
        ] {
            let e = bad.parse::<Ipv4Prefix>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(Ipv4Prefix::new(Ipv4Addr::LOCALHOST, 33).is_none());
    }

    #[test]
    fn validate_built_config() {
        let mut c = parse(BASE).unwrap();
        c.validate(CPUS).unwrap();
        c.workers.burst = 0;
        assert_eq!(
            c.validate(CPUS).unwrap_err().to_string(),
            "workers.burst = 0: must be 1-32"
        );
    }

    #[test]
    fn read_errors_name_the_file() {
        let e = Config::from_file(Path::new("/nonexistent/seqd.toml")).unwrap_err();
        let line = e.to_string();
        assert!(
            line.starts_with("/nonexistent/seqd.toml: cannot read"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "\u{feff}[eal]",
            "[eal]\ncores = \"\u{e9}\"",
            "eal = 5",
            "[[eal]]\ncores = 1",
            "[eal]\ncores = \"0-1\"\n[[interface]]\nname = \"\u{e9}\"\ndevice = \"\u{e9}:\u{e9}\"\nipv4 = \"1.1.1.1/1\"\n[workers]\nlcores = [1]",
            "[eal]\ncores = [4294967295]\n[workers]\nlcores = [4294967295]",
            "[eal]\ncores = [99999999999]",
            "\0\0\0",
            "a.b.c.d = 1",
        ];
        for text in odd {
            if let Err(e) = parse(text) {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
    }

    #[test]
    fn host_affinity_is_readable() {
        let cpus = available_cpus();
        assert!(!cpus.is_empty());
    }

    #[test]
    fn example_configs_parse() {
        for name in ["seqd.toml", "pcap-demo.toml"] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/");
            let path = Path::new(path).join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let c = Config::parse_with_cpus(&text, name, CPUS).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.interfaces.len(), 2, "{name}");
        }
    }
}
