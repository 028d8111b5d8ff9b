//! Access control lists in the config: `[[acl]]` sections, validated and
//! compiled into the datapath's [`AclTable`].
//!
//! ```toml
//! [[acl]]
//! interface = "client"
//! service = "acme-web"     # omit: provider rules for every service on the interface
//! default = "allow"        # when no rule matches
//!
//! [[acl.rule]]
//! priority = 10            # lower first; unique within one [[acl]]
//! src = "198.18.0.0/15"    # default 0.0.0.0/0
//! protocol = "tcp"         # tcp | udp | icmp | any (default any)
//! dst_ports = "80"         # a port or "lo-hi" (default any)
//! src_ports = "1024-65535" # (default any)
//! tcp_flags = { set = ["syn"], clear = ["ack"] }   # optional
//! action = "deny"
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::services::CompileError;
use super::slots::{SetKey, Slots};
use crate::acl::{
    AclTable, AclTableBuilder, Action, PortRange, Protocol, Rule, RuleSet, SrcPrefix, TcpFlagsMatch,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionConfig {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AclProtocolConfig {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// A port, written as a number or a string "p" / "lo-hi".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortsConfig {
    One(u16),
    Text(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFlagsConfig {
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub clear: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default)]
    pub protocol: AclProtocolConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ports: Option<PortsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ports: Option<PortsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlagsConfig>,
    pub action: ActionConfig,
}

/// One `[[acl]]`: the rules of one interface, for one service or (without
/// `service`) for every service there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub default: ActionConfig,
    #[serde(rename = "rule", default)]
    pub rules: Vec<AclRuleConfig>,
}

/// Where each compiled rule id came from, for counters and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's id in the table: its counter slot.
    pub slot: u32,
    /// Shared by every rule of the set (one allocation per set, not two
    /// per rule).
    pub interface: Arc<str>,
    /// None: a provider rule.
    pub service: Option<Arc<str>>,
    pub priority: u32,
    pub action: &'static str,
    /// The client host when the rule names a single one (/32).
    pub client: Option<Ipv4Addr>,
}

/// A rule set's default action and its counter slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultInfo {
    pub slot: u32,
    pub interface: Arc<str>,
    pub service: Option<Arc<str>>,
    pub action: &'static str,
}

/// The compiled ACLs and what their ids mean.
pub struct CompiledAcls {
    pub table: AclTable,
    /// Every rule, in config order.
    pub rules: Vec<RuleInfo>,
    /// Each [[acl]]'s default action: (slot, interface, service, action).
    pub defaults: Vec<DefaultInfo>,
    /// (interface, service IP or None for the provider set) -> default slot.
    pub default_index: HashMap<(u16, Option<Ipv4Addr>), u32>,
}

fn err(key: String, value: impl std::fmt::Display, message: impl Into<String>) -> CompileError {
    CompileError {
        key,
        value: Some(value.to_string()),
        message: message.into(),
    }
}

fn action(a: ActionConfig) -> Action {
    match a {
        ActionConfig::Allow => Action::Allow,
        ActionConfig::Deny => Action::Deny,
    }
}

fn action_name(a: ActionConfig) -> &'static str {
    match a {
        ActionConfig::Allow => "allow",
        ActionConfig::Deny => "deny",
    }
}

fn parse_ports(
    key: impl Fn() -> String,
    p: &Option<PortsConfig>,
) -> Result<PortRange, CompileError> {
    let text = match p {
        None => return Ok(PortRange::ANY),
        Some(PortsConfig::One(n)) => return Ok(PortRange { lo: *n, hi: *n }),
        Some(PortsConfig::Text(t)) => t,
    };
    let bad = |m: &str| err(key(), format!("{text:?}"), m.to_string());
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let lo = lo
        .parse::<u16>()
        .map_err(|_| bad("expected a port or a range like \"1024-65535\""))?;
    let hi = hi
        .parse::<u16>()
        .map_err(|_| bad("expected a port or a range like \"1024-65535\""))?;
    if lo > hi {
        return Err(bad("the port range is upside down"));
    }
    Ok(PortRange { lo, hi })
}

fn parse_prefix(key: impl Fn() -> String, s: &Option<String>) -> Result<SrcPrefix, CompileError> {
    let Some(s) = s else {
        return Ok(SrcPrefix { addr: 0, len: 0 });
    };
    let bad = |m: &str| err(key(), format!("{s:?}"), m.to_string());
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, l),
        None => (s.as_str(), "32"),
    };
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| bad("expected an IPv4 prefix like \"198.18.0.0/15\""))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&l| l <= 32)
        .ok_or_else(|| bad("the prefix length must be 0-32"))?;
    let addr = u32::from(addr);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if addr & !mask != 0 {
        return Err(bad(&format!(
            "host bits are set (did you mean {}/{len}?)",
            Ipv4Addr::from(addr & mask)
        )));
    }
    Ok(SrcPrefix { addr, len })
}

fn parse_flags(
    key: impl Fn() -> String,
    f: &TcpFlagsConfig,
) -> Result<TcpFlagsMatch, CompileError> {
    const FLAGS: [(&str, u8); 8] = [
        ("fin", 0x01),
        ("syn", 0x02),
        ("rst", 0x04),
        ("psh", 0x08),
        ("ack", 0x10),
        ("urg", 0x20),
        ("ece", 0x40),
        ("cwr", 0x80),
    ];
    // Any case, without a lowercased copy per flag.
    let bit = |name: &str| -> Result<u8, CompileError> {
        FLAGS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, b)| b)
            .ok_or_else(|| {
                err(
                    key(),
                    format!("{name:?}"),
                    "a TCP flag is one of fin syn rst psh ack urg ece cwr",
                )
            })
    };
    let mut m = TcpFlagsMatch { mask: 0, value: 0 };
    for s in &f.set {
        let b = bit(s)?;
        m.mask |= b;
        m.value |= b;
    }
    for c in &f.clear {
        let b = bit(c)?;
        if m.value & b != 0 {
            return Err(err(
                key(),
                format!("{c:?}"),
                "a flag cannot be both set and clear",
            ));
        }
        m.mask |= b;
    }
    Ok(m)
}

/// Compiles every `[[acl]]` of the config. `services` maps service names to
/// their IPs (from the service compiler).
pub fn compile(config: &Config, slots: &mut Slots) -> Result<CompiledAcls, CompileError> {
    compile_cached(config, slots, None).map(|(c, _)| c)
}

/// A customer set as the last accepted version compiled it.
#[derive(Debug)]
pub(super) struct CachedSet {
    config: AclConfig,
    set: Arc<RuleSet>,
    rules: Vec<RuleInfo>,
    default: DefaultInfo,
}

/// The compiled customer sets of the last accepted version, by
/// (interface, service IP): an update reuses every set whose `[[acl]]` it
/// left as it was, so changing one service's rules compiles that one set.
#[derive(Debug, Clone, Default)]
pub struct AclCache {
    pub(super) sets: HashMap<(u16, Ipv4Addr), Arc<CachedSet>>,
}

/// [`compile`], reusing the unchanged sets of `cache` when given; then
/// also returns the cache for the next compile (empty without `cache`).
pub fn compile_cached(
    config: &Config,
    slots: &mut Slots,
    cache: Option<&AclCache>,
) -> Result<(CompiledAcls, AclCache), CompileError> {
    let mut next = AclCache::default();
    if cache.is_some() {
        next.sets.reserve(config.acls.len());
    }
    let mut b = AclTable::builder();
    let n_rules = config.acls.iter().map(|a| a.rules.len()).sum();
    let mut rules_info = Vec::with_capacity(n_rules);
    let mut defaults = Vec::with_capacity(config.acls.len());
    let mut default_index = HashMap::with_capacity(config.acls.len());
    let iface_names: Vec<Arc<str>> = config
        .interfaces
        .iter()
        .map(|i| Arc::from(i.name.as_str()))
        .collect();
    let mut seen: HashMap<(u16, Option<Ipv4Addr>), usize> =
        HashMap::with_capacity(config.acls.len());
    // Found by name once per [[acl]]: a scan of every service per ACL made
    // compiling quadratic (81 s at 100,000 service ports).
    let service_ips: HashMap<&str, Ipv4Addr> = config
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.ip))
        .collect();
    for (ai, acl) in config.acls.iter().enumerate() {
        let key = |f: &str| format!("acl[{ai}].{f}");
        let iface = config
            .interfaces
            .iter()
            .position(|i| i.name == acl.interface)
            .ok_or_else(|| {
                err(
                    key("interface"),
                    format!("{:?}", acl.interface),
                    "no [[interface]] has this name",
                )
            })? as u16;
        let service_ip = match &acl.service {
            None => None,
            Some(name) => Some(service_ips.get(name.as_str()).copied().ok_or_else(|| {
                err(
                    key("service"),
                    format!("{name:?}"),
                    "no [[service]] has this name",
                )
            })?),
        };
        if let Some(prev) = seen.insert((iface, service_ip), ai) {
            return Err(err(
                key("service"),
                format!("{:?}", acl.service.as_deref().unwrap_or("(provider rules)")),
                format!(
                    "acl[{prev}] already holds these rules for interface {:?}",
                    acl.interface
                ),
            ));
        }
        let full = |what: &str, cap: usize| {
            err(
                key("rule"),
                format!("{:?}", acl.service.as_deref().unwrap_or("(provider rules)")),
                format!("no counter slot left for a new {what} (capacity {cap} this run); restart seqd to grow"),
            )
        };
        if let (Some(ip), Some(cache)) = (service_ip, cache) {
            if let Some(c) = cache.sets.get(&(iface, ip)).filter(|c| c.config == *acl) {
                // Its slots are the running ones: a set keeps them for the run.
                default_index.insert((iface, service_ip), c.default.slot);
                rules_info.extend(c.rules.iter().cloned());
                defaults.push(c.default.clone());
                b.add_compiled_customer(iface, u32::from(ip), Arc::clone(&c.set));
                next.sets.insert((iface, ip), Arc::clone(c));
                continue;
            }
        }
        let default_slot = slots
            .acl_defaults
            .slot(&SetKey(&acl.interface, acl.service.as_deref()))
            .ok_or_else(|| full("rule set", slots.acl_defaults.capacity()))?;
        default_index.insert((iface, service_ip), default_slot);
        let iface_name: Arc<str> = Arc::clone(&iface_names[iface as usize]);
        let service_name: Option<Arc<str>> = acl.service.as_deref().map(Arc::from);
        let mut rules = Vec::with_capacity(acl.rules.len());
        let mut priorities: HashMap<u32, usize> = HashMap::new();
        for (ri, r) in acl.rules.iter().enumerate() {
            let rkey = |f: &str| format!("acl[{ai}].rule[{ri}].{f}");
            if let Some(other) = priorities.insert(r.priority, ri) {
                return Err(err(
                    rkey("priority"),
                    r.priority,
                    format!("acl[{ai}].rule[{other}] has the same priority (first match must be unambiguous)"),
                ));
            }
            // Keys are formatted only for an error: a rule costs no allocation.
            let src = parse_prefix(|| rkey("src"), &r.src)?;
            let tcp_flags = match &r.tcp_flags {
                None => None,
                Some(f) => {
                    if !matches!(r.protocol, AclProtocolConfig::Tcp | AclProtocolConfig::Any) {
                        return Err(err(
                            rkey("tcp_flags"),
                            "{..}",
                            "TCP flags need protocol = \"tcp\"",
                        ));
                    }
                    Some(parse_flags(|| rkey("tcp_flags"), f)?)
                }
            };
            let slot = slots
                .acl_rules
                .slot(&(default_slot, r.priority))
                .ok_or_else(|| full("rule", slots.acl_rules.capacity()))?;
            let rule = Rule {
                id: slot,
                priority: r.priority,
                src,
                protocol: match r.protocol {
                    AclProtocolConfig::Any => Protocol::Any,
                    AclProtocolConfig::Tcp => Protocol::Tcp,
                    AclProtocolConfig::Udp => Protocol::Udp,
                    AclProtocolConfig::Icmp => Protocol::Icmp,
                },
                dst_ports: parse_ports(|| rkey("dst_ports"), &r.dst_ports)?,
                src_ports: parse_ports(|| rkey("src_ports"), &r.src_ports)?,
                tcp_flags,
                action: action(r.action),
            };
            rules_info.push(RuleInfo {
                slot,
                interface: Arc::clone(&iface_name),
                service: service_name.clone(),
                priority: r.priority,
                action: action_name(r.action),
                client: (src.len == 32).then(|| Ipv4Addr::from(src.addr)),
            });
            rules.push(rule);
        }
        let default = DefaultInfo {
            slot: default_slot,
            interface: iface_name,
            service: service_name,
            action: action_name(acl.default),
        };
        match (service_ip, cache) {
            (None, _) => {
                b.add_provider(iface, rules, action(acl.default));
            }
            (Some(ip), None) => {
                b.add_customer(iface, u32::from(ip), rules, action(acl.default));
            }
            (Some(ip), Some(_)) => {
                let ip32 = u32::from(ip);
                let set =
                    AclTableBuilder::compile_customer(iface, ip32, &rules, action(acl.default))
                        .map_err(|e| err("acl".into(), "(rules)", e.to_string()))?;
                let set = Arc::new(set);
                b.add_compiled_customer(iface, ip32, Arc::clone(&set));
                let first = rules_info.len() - acl.rules.len();
                next.sets.insert(
                    (iface, ip),
                    Arc::new(CachedSet {
                        config: acl.clone(),
                        set,
                        rules: rules_info[first..].to_vec(),
                        default: default.clone(),
                    }),
                );
            }
        }
        defaults.push(default);
    }
    let table = b
        .build()
        .map_err(|e| err("acl".into(), "(rules)", e.to_string()))?;
    Ok((
        CompiledAcls {
            table,
            rules: rules_info,
            defaults,
            default_index,
        },
        next,
    ))
}
