//! Services, devices and the client side: their TOML form, their
//! validation, and their compilation into the datapath's [`Tables`].
//!
//! Compilation runs off the datapath (at start, and on every update later);
//! every error names the key path and the value, like the rest of the config.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::acls::{DefaultInfo, RuleInfo};
use super::config::{de_ipv4, de_opt_ipv4, de_opt_mac, Config};
use super::slots::{PortKey, Slots};
use crate::datapath::neighbor::{NeighborKey, Neighbors};
use crate::datapath::packet::{IpProtocol, MacAddr};
use crate::datapath::tables::{
    ClientSide, Copies, Device, DeviceId, DeviceMode, Hop, Leg, NextMac, ServicePort, Tables,
    MAX_COPIES, MAX_HOPS,
};

/// `[client]`: the interface toward the router, and the gateway behind it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub interface: String,
    #[serde(deserialize_with = "de_ipv4")]
    pub gateway: Ipv4Addr,
    /// Static gateway MAC; without it the gateway is resolved by ARP.
    #[serde(
        default,
        deserialize_with = "de_opt_mac",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModeConfig {
    Loopback,
    #[default]
    Alias,
    Nat,
}

/// One `[[device]]`: an appliance or server seqd steers packets through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    #[serde(default)]
    pub mode: ModeConfig,
    pub interface: String,
    #[serde(
        default,
        deserialize_with = "de_opt_mac",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<MacAddr>,
    #[serde(
        default,
        deserialize_with = "de_opt_ipv4",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_interface: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_opt_mac",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_vlan: Option<u16>,
    /// The device (or pool) that takes over while this one is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
    /// `down`: taken out of service (failed, or in maintenance); every
    /// sequence through it goes through its alternate instead.
    #[serde(default, skip_serializing_if = "DeviceState::is_up")]
    pub state: DeviceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    #[default]
    Up,
    Down,
}

impl DeviceState {
    pub fn is_up(&self) -> bool {
        *self == DeviceState::Up
    }
}

/// One `[[pool]]`: like devices (same function, same configuration) that
/// can take over for each other. A down device without an `alternate` is
/// replaced by the first member of its pool that is up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolConfig {
    #[default]
    Tcp,
    Udp,
    Both,
}

/// One `[[service]]`: a service IP and its ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(deserialize_with = "de_ipv4")]
    pub ip: Ipv4Addr,
    #[serde(rename = "port", default)]
    pub ports: Vec<ServicePortConfig>,
}

/// One `[[service.port]]`: a service port and its sequence.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortConfig {
    pub port: u16,
    #[serde(default)]
    pub protocol: ProtocolConfig,
    pub hops: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copies: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate_to: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_ports: Option<String>,
}

/// A dynamic port range (lo, hi) and the port that owns it (service and
/// port index).
type DynamicRange = (u16, u16, PortIndex);

/// A service port by position: (service index, port index).
type PortIndex = (usize, usize);

/// `service "acme" port 80`: how errors name another service port.
fn port_name(config: &Config, (si, pi): (usize, usize)) -> String {
    let s = &config.services[si];
    format!("service {:?} port {}", s.name, s.ports[pi].port)
}

/// A compile error: key path, value as written, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub key: String,
    pub value: Option<String>,
    pub message: String,
}

fn err(
    key: impl Into<String>,
    value: impl std::fmt::Display,
    message: impl Into<String>,
) -> CompileError {
    CompileError {
        key: key.into(),
        value: Some(value.to_string()),
        message: message.into(),
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

/// Parses "lo-hi" (inclusive).
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| "expected a port range like \"1025-1125\"".to_string())?;
    let lo = a
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let hi = b
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{b:?} is not a port"))?;
    if lo == 0 {
        return Err("port 0 is not a port".into());
    }
    if lo > hi {
        return Err(format!("range is upside down ({lo} > {hi})"));
    }
    Ok((lo, hi))
}

fn check_vlan(key: String, vlan: Option<u16>) -> Result<(), CompileError> {
    match vlan {
        Some(v) if !(1..=4094).contains(&v) => Err(err(key, v, "a VLAN id must be 1-4094")),
        _ => Ok(()),
    }
}

/// Everything one config version compiles to.
pub struct Compiled {
    pub tables: Tables,
    pub acls: CompiledAclInfo,
}

/// What ACL rule ids and default slots mean (for counters).
#[derive(Debug, Clone, Default)]
pub struct CompiledAclInfo {
    pub rules: Vec<RuleInfo>,
    pub defaults: Vec<DefaultInfo>,
}

/// Compiles services, devices and ACLs into version `version` of the tables.
pub fn compile_all(
    config: &Config,
    version: u64,
    slots: &mut Slots,
) -> Result<Compiled, CompileError> {
    let tables = compile(config, version, slots)?;
    if config.acls.is_empty() {
        return Ok(Compiled {
            tables,
            acls: CompiledAclInfo::default(),
        });
    }
    let acls = super::acls::compile(config, slots)?;
    let defaults = acls
        .default_index
        .iter()
        .map(|(&k, &slot)| (k, slot))
        .collect::<Vec<_>>();
    Ok(Compiled {
        tables: tables.with_acl(acls.table, defaults),
        acls: CompiledAclInfo {
            rules: acls.rules,
            defaults: acls.defaults,
        },
    })
}

/// What an update reuses from the last accepted version: its tables
/// before the ACLs were added, and its compiled ACL sets.
#[derive(Clone, Default)]
pub struct CompileCache {
    tables: Option<Arc<Tables>>,
    acls: super::acls::AclCache,
}

/// [`compile_all`] for an update to the version `cache` came from. With
/// `services_unchanged` (its client side, devices, pools and services are
/// those of that version) the service tables are that version's, not
/// compiled again; ACL sets whose `[[acl]]` is unchanged are reused. Also
/// returns the cache for the update after this one.
pub fn compile_all_cached(
    config: &Config,
    version: u64,
    slots: &mut Slots,
    cache: &CompileCache,
    services_unchanged: bool,
) -> Result<(Compiled, CompileCache), CompileError> {
    let base = match (&cache.tables, services_unchanged) {
        (Some(t), true) => Arc::clone(t),
        _ => Arc::new(compile(config, version, slots)?),
    };
    let mut tables = Tables::clone(&base);
    tables.version = version;
    let (acls, acl_cache) = super::acls::compile_cached(config, slots, Some(&cache.acls))?;
    let next = CompileCache {
        tables: Some(base),
        acls: acl_cache,
    };
    if config.acls.is_empty() {
        return Ok((
            Compiled {
                tables,
                acls: CompiledAclInfo::default(),
            },
            next,
        ));
    }
    let defaults = acls
        .default_index
        .iter()
        .map(|(&k, &slot)| (k, slot))
        .collect::<Vec<_>>();
    Ok((
        Compiled {
            tables: tables.with_acl(acls.table, defaults),
            acls: CompiledAclInfo {
                rules: acls.rules,
                defaults: acls.defaults,
            },
        },
        next,
    ))
}

/// For every device that is down: the device that takes its place — its
/// `alternate` (followed while that is down too; a pool there means its
/// first member that is up), else the first member that is up of a pool
/// it belongs to. `None`: nothing can take over, so its sequences keep it.
/// Checks the names `[[pool]]` and `alternate` use.
pub fn takeovers(config: &Config) -> Result<BTreeMap<String, Option<String>>, CompileError> {
    let device = |name: &str| config.devices.iter().find(|d| d.name == name);
    let mut pool_names = HashSet::new();
    for (i, p) in config.pools.iter().enumerate() {
        let key = |f: &str| format!("pool[{i}].{f}");
        if p.name.is_empty() || !pool_names.insert(p.name.as_str()) {
            return Err(err(
                key("name"),
                q(&p.name),
                "pool names must be unique and not empty",
            ));
        }
        if device(&p.name).is_some() {
            return Err(err(key("name"), q(&p.name), "a device has this name"));
        }
        for (j, m) in p.devices.iter().enumerate() {
            if device(m).is_none() {
                return Err(err(
                    format!("pool[{i}].devices[{j}]"),
                    q(m),
                    "no [[device]] has this name",
                ));
            }
            if p.devices[..j].contains(m) {
                return Err(err(format!("pool[{i}].devices[{j}]"), q(m), "listed twice"));
            }
        }
    }
    let pool = |name: &str| config.pools.iter().find(|p| p.name == name);
    for (i, d) in config.devices.iter().enumerate() {
        if let Some(a) = &d.alternate {
            if *a == d.name {
                return Err(err(
                    format!("device[{i}].alternate"),
                    q(a),
                    "a device cannot take over for itself",
                ));
            }
            if device(a).is_none() && pool(a).is_none() {
                return Err(err(
                    format!("device[{i}].alternate"),
                    q(a),
                    "no [[device]] or [[pool]] has this name",
                ));
            }
        }
    }
    let up = |name: &str| device(name).is_some_and(|d| d.state.is_up());
    let first_up =
        |members: &[String], not: &str| members.iter().find(|m| *m != not && up(m)).cloned();
    let mut out = BTreeMap::new();
    for d in config.devices.iter().filter(|d| !d.state.is_up()) {
        let mut seen = vec![d.name.as_str()];
        let mut at = d;
        let found = loop {
            match &at.alternate {
                Some(a) if pool(a).is_some() => break first_up(&pool(a).unwrap().devices, &d.name),
                Some(a) => {
                    let next = device(a).expect("checked above");
                    if next.state.is_up() {
                        break Some(next.name.clone());
                    }
                    if seen.contains(&next.name.as_str()) {
                        break None;
                    }
                    seen.push(&next.name);
                    at = next;
                }
                None => {
                    break config
                        .pools
                        .iter()
                        .filter(|p| p.devices.contains(&d.name))
                        .find_map(|p| first_up(&p.devices, &d.name))
                }
            }
        };
        out.insert(d.name.clone(), found);
    }
    Ok(out)
}

/// Compiles the config's client side, devices and services into version
/// `version` of the tables.
pub fn compile(config: &Config, version: u64, slots: &mut Slots) -> Result<Tables, CompileError> {
    let iface_index = |key: String, name: &str| -> Result<u16, CompileError> {
        config
            .interfaces
            .iter()
            .position(|i| i.name == name)
            .map(|i| i as u16)
            .ok_or_else(|| err(key, q(name), "no [[interface]] has this name"))
    };
    let mut neighbor_keys: Vec<NeighborKey> = Vec::new();
    let mut neighbor = |key: NeighborKey| -> u32 {
        match neighbor_keys.iter().position(|k| *k == key) {
            Some(i) => i as u32,
            None => {
                neighbor_keys.push(key);
                (neighbor_keys.len() - 1) as u32
            }
        }
    };

    let client = match &config.client {
        None => None,
        Some(c) => {
            let iface = iface_index("client.interface".into(), &c.interface)?;
            let ic = &config.interfaces[iface as usize];
            if !ic.ipv4.contains(c.gateway) || c.gateway == ic.ipv4.addr {
                return Err(err(
                    "client.gateway",
                    q(&c.gateway.to_string()),
                    format!(
                        "the gateway must be another address in {} (interface {:?})",
                        ic.ipv4, ic.name
                    ),
                ));
            }
            let gateway = match c.gateway_mac {
                Some(m) if !m.is_unicast() => {
                    return Err(err(
                        "client.gateway_mac",
                        q(&m.to_string()),
                        "must be a unicast MAC",
                    ))
                }
                Some(m) => NextMac::Static(m),
                None => NextMac::Neighbor(neighbor(NeighborKey {
                    iface,
                    vlan: None,
                    ip: c.gateway,
                })),
            };
            Some(ClientSide { iface, gateway })
        }
    };

    let mut devices = Vec::with_capacity(config.devices.len());
    let mut device_ids: HashMap<&str, DeviceId> = HashMap::new();
    for (i, d) in config.devices.iter().enumerate() {
        let key = |f: &str| format!("device[{i}].{f}");
        if d.name.is_empty()
            || d.name.len() > 64
            || !d
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(err(
                key("name"),
                q(&d.name),
                "a device name is 1-64 of [a-z0-9_-]",
            ));
        }
        if device_ids.insert(&d.name, i as DeviceId).is_some() {
            return Err(err(key("name"), q(&d.name), "another device has this name"));
        }
        let iface = iface_index(key("interface"), &d.interface)?;
        check_vlan(key("vlan"), d.vlan)?;
        check_vlan(key("server_vlan"), d.server_vlan)?;
        for (f, m) in [("mac", d.mac), ("server_mac", d.server_mac)] {
            if let Some(m) = m.filter(|m| !m.is_unicast()) {
                return Err(err(key(f), q(&m.to_string()), "must be a unicast MAC"));
            }
        }
        if d.mode == ModeConfig::Nat && d.ipv4.is_none() {
            return Err(err(
                key("mode"),
                q("nat"),
                "a nat device needs ipv4 (its own address)",
            ));
        }
        let mac = match (d.mac, d.ipv4) {
            (Some(m), _) => NextMac::Static(m),
            (None, Some(ip)) => {
                let ic = &config.interfaces[iface as usize];
                if !ic.ipv4.contains(ip) {
                    return Err(err(
                        key("ipv4"),
                        q(&ip.to_string()),
                        format!(
                            "without mac, the device is resolved by ARP and must be in {} (interface {:?})",
                            ic.ipv4, ic.name
                        ),
                    ));
                }
                NextMac::Neighbor(neighbor(NeighborKey {
                    iface,
                    vlan: d.vlan,
                    ip,
                }))
            }
            (None, None) => {
                return Err(err(
                    key("name"),
                    q(&d.name),
                    "a device needs mac, ipv4, or both",
                ));
            }
        };
        let client_leg = Leg {
            iface,
            vlan: d.vlan,
            mac,
        };
        let server_leg = match &d.server_interface {
            None => {
                if d.server_mac.is_some() || d.server_vlan.is_some() {
                    return Err(err(
                        key("server_interface"),
                        "(missing)",
                        "server_mac and server_vlan need server_interface",
                    ));
                }
                client_leg
            }
            Some(s) => Leg {
                iface: iface_index(key("server_interface"), s)?,
                vlan: d.server_vlan,
                mac: NextMac::Static(d.server_mac.ok_or_else(|| {
                    err(
                        key("server_mac"),
                        "(missing)",
                        "a second leg needs server_mac",
                    )
                })?),
            },
        };
        let slot = slots.devices.slot(d.name.as_str()).ok_or_else(|| {
            err(
                key("name"),
                q(&d.name),
                format!(
                    "no counter slot left for a new device (capacity {} this run); restart seqd to grow",
                    slots.devices.capacity()
                ),
            )
        })?;
        devices.push(Device {
            name: d.name.clone(),
            slot,
            mode: match d.mode {
                ModeConfig::Loopback => DeviceMode::Loopback,
                ModeConfig::Alias => DeviceMode::Alias,
                ModeConfig::Nat => DeviceMode::Nat,
            },
            ipv4: d.ipv4,
            client_leg,
            server_leg,
        });
    }

    // Sequences through a device that is down go through what takes over.
    let mut takeover: Vec<DeviceId> = (0..devices.len() as DeviceId).collect();
    for (down, to) in takeovers(config)? {
        if let Some(to) = to {
            takeover[device_ids[down.as_str()] as usize] = device_ids[to.as_str()];
        }
    }

    if !config.services.is_empty() && client.is_none() {
        return Err(err(
            "client",
            "(missing)",
            "services need a [client] section (the interface toward clients and its gateway)",
        ));
    }
    let own_ips: HashSet<Ipv4Addr> = config.interfaces.iter().map(|i| i.ipv4.addr).collect();
    // Sized up front: growing maps of 100,000+ entries rehash them all.
    let n_ports: usize = config.services.iter().map(|s| s.ports.len()).sum();
    let mut ports = Vec::with_capacity(n_ports + n_ports / 4);
    let mut names = HashSet::with_capacity(config.services.len());
    // (protocol, ip, port) -> key of the port that claims it.
    let mut claimed: HashMap<(u8, Ipv4Addr, u16), (usize, usize)> =
        HashMap::with_capacity(n_ports + n_ports / 4);
    // (protocol, ip) -> dynamic ranges with their keys.
    let mut ranges: HashMap<(u8, Ipv4Addr), Vec<DynamicRange>> = HashMap::new();
    for (si, s) in config.services.iter().enumerate() {
        let skey = |f: &str| format!("service[{si}].{f}");
        if s.name.is_empty() || !names.insert(s.name.as_str()) {
            return Err(err(
                skey("name"),
                q(&s.name),
                "service names must be unique and not empty",
            ));
        }
        if own_ips.contains(&s.ip)
            || s.ip.is_unspecified()
            || s.ip.is_broadcast()
            || s.ip.is_multicast()
        {
            return Err(err(
                skey("ip"),
                q(&s.ip.to_string()),
                "a service IP must be a unicast address that is not one of seqd's interfaces",
            ));
        }
        if s.ports.is_empty() {
            return Err(err(
                skey("port"),
                "[]",
                "a service needs at least one [[service.port]]",
            ));
        }
        for (pi, p) in s.ports.iter().enumerate() {
            let pkey = |f: &str| format!("service[{si}].port[{pi}].{f}");
            if p.port == 0 {
                return Err(err(pkey("port"), 0, "port 0 is not a port"));
            }
            if p.hops.is_empty() {
                return Err(err(
                    pkey("hops"),
                    "[]",
                    "a sequence needs at least its end device",
                ));
            }
            if p.hops.len() > MAX_HOPS {
                return Err(err(
                    pkey("hops"),
                    p.hops.len(),
                    format!("at most {MAX_HOPS} hops"),
                ));
            }
            let mut hops: Vec<Hop> = Vec::with_capacity(p.hops.len());
            for (hi, h) in p.hops.iter().enumerate() {
                let &named = device_ids.get(h.as_str()).ok_or_else(|| {
                    err(
                        format!("service[{si}].port[{pi}].hops[{hi}]"),
                        q(h),
                        "no [[device]] has this name",
                    )
                })?;
                let id = takeover[named as usize];
                if hops.iter().any(|x| x.device == id) {
                    return Err(err(
                        format!("service[{si}].port[{pi}].hops[{hi}]"),
                        q(h),
                        if id == named {
                            "this device is already in the sequence (a loop)".to_string()
                        } else {
                            format!(
                                "this device is down and {:?}, which takes over for it, is already in the sequence",
                                devices[id as usize].name
                            )
                        },
                    ));
                }
                if devices[id as usize].mode == DeviceMode::Nat && hi + 1 != p.hops.len() {
                    return Err(err(
                        format!("service[{si}].port[{pi}].hops[{hi}]"),
                        q(h),
                        "a nat device can only be the last hop (the end server)",
                    ));
                }
                hops.push(Hop {
                    device: id,
                    copies: Copies::default(),
                });
            }
            for (at, passive) in &p.copies {
                let ckey = format!("service[{si}].port[{pi}].copies.{at}");
                let hi = p.hops.iter().position(|h| h == at).ok_or_else(|| {
                    err(
                        ckey.clone(),
                        q(at),
                        "copies are keyed by a hop of this sequence",
                    )
                })?;
                let mut ids = Vec::new();
                for (ci, c) in passive.iter().enumerate() {
                    let ckey = format!("{ckey}[{ci}]");
                    let &named = device_ids
                        .get(c.as_str())
                        .ok_or_else(|| err(ckey.clone(), q(c), "no [[device]] has this name"))?;
                    let id = takeover[named as usize];
                    if p.hops.contains(c) {
                        return Err(err(
                            ckey,
                            q(c),
                            "a hop of this sequence cannot also be passive",
                        ));
                    }
                    ids.push(id);
                }
                hops[hi].copies = Copies::new(&ids).ok_or_else(|| {
                    err(
                        ckey,
                        ids.len(),
                        format!("at most {MAX_COPIES} passive devices per hop"),
                    )
                })?;
            }
            let alerts_to = match &p.alerts_to {
                None => hops.len() - 1,
                Some(a) => p.hops.iter().position(|h| h == a).ok_or_else(|| {
                    err(
                        pkey("alerts_to"),
                        q(a),
                        "alerts go to a hop of this sequence",
                    )
                })?,
            };
            if p.translate_to == Some(0) {
                return Err(err(pkey("translate_to"), 0, "port 0 is not a port"));
            }
            let dynamic = match &p.dynamic_ports {
                None => None,
                Some(r) => Some(parse_range(r).map_err(|m| err(pkey("dynamic_ports"), q(r), m))?),
            };
            let protocols: &[IpProtocol] = match p.protocol {
                ProtocolConfig::Tcp => &[IpProtocol::Tcp],
                ProtocolConfig::Udp => &[IpProtocol::Udp],
                ProtocolConfig::Both => &[IpProtocol::Tcp, IpProtocol::Udp],
            };
            for &proto in protocols {
                if let Some(other) = claimed.insert((proto.into(), s.ip, p.port), (si, pi)) {
                    return Err(err(
                        pkey("port"),
                        p.port,
                        format!(
                            "{} {}:{} is already used by {}",
                            proto,
                            s.ip,
                            p.port,
                            port_name(config, other)
                        ),
                    ));
                }
                if let Some((lo, hi)) = dynamic {
                    ranges
                        .entry((proto.into(), s.ip))
                        .or_default()
                        .push((lo, hi, (si, pi)));
                }
                let slot = slots
                    .service_ports
                    .slot(&PortKey(&s.name, proto.into(), p.port))
                    .ok_or_else(|| {
                        err(
                            pkey("port"),
                            p.port,
                            format!(
                                "no counter slot left for a new service port (capacity {} this run); restart seqd to grow",
                                slots.service_ports.capacity()
                            ),
                        )
                    })?;
                ports.push(ServicePort {
                    slot,
                    service: s.name.clone(),
                    ip: s.ip,
                    protocol: proto,
                    port: p.port,
                    translate_to: p.translate_to.filter(|&t| t != p.port),
                    dynamic,
                    hops: hops.clone(),
                    alerts_to,
                });
            }
        }
    }
    // Dynamic ranges of one service IP may not overlap, nor hold another
    // port of it: the ports of the IPs that have ranges, sorted, are
    // searched per range (not every port for every range).
    let mut ports_of: HashMap<(u8, Ipv4Addr), Vec<(u16, PortIndex)>> = HashMap::new();
    for (&(proto, ip, port), &owner) in &claimed {
        if ranges.contains_key(&(proto, ip)) {
            ports_of.entry((proto, ip)).or_default().push((port, owner));
        }
    }
    ports_of.values_mut().for_each(|v| v.sort_unstable());
    let range_key = |(si, pi): (usize, usize)| format!("service[{si}].port[{pi}].dynamic_ports");
    for (key, list) in &ranges {
        for (i, &(lo, hi, owner)) in list.iter().enumerate() {
            for &(lo2, hi2, owner2) in &list[i + 1..] {
                if lo <= hi2 && lo2 <= hi {
                    return Err(err(
                        range_key(owner2),
                        q(&format!("{lo2}-{hi2}")),
                        format!(
                            "overlaps the dynamic ports {lo}-{hi} of {}",
                            port_name(config, owner)
                        ),
                    ));
                }
            }
            let sorted = &ports_of[key];
            let from = sorted.partition_point(|&(p, _)| p < lo);
            if let Some(&(port2, other)) = sorted[from..]
                .iter()
                .take_while(|&&(p, _)| p <= hi)
                .find(|&&(_, o)| o != owner)
            {
                return Err(err(
                    range_key(owner),
                    q(&format!("{lo}-{hi}")),
                    format!(
                        "contains port {port2}, which {} uses",
                        port_name(config, other)
                    ),
                ));
            }
        }
    }
    Tables::build(
        version,
        client,
        devices,
        ports,
        Arc::new(Neighbors::new(neighbor_keys)),
    )
    .map_err(|e| err("service", "(tables)", e.0))
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
[[interface]]
name = "devices"
device = "net_null1"
ipv4 = "198.51.100.1/24"
[client]
interface = "client"
gateway = "192.0.2.254"
[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"
[[device]]
name = "ids1"
interface = "devices"
mac = "52:54:00:00:00:20"
[[device]]
name = "web1"
mode = "nat"
interface = "devices"
ipv4 = "198.51.100.30"
[[service]]
name = "acme"
ip = "203.0.113.10"
[[service.port]]
port = 80
hops = ["fw1", "web1"]
copies = { web1 = ["ids1"] }
translate_to = 8080
dynamic_ports = "1025-1125"
"#;

    fn compile_text(text: &str) -> Result<Tables, String> {
        let cfg = Config::parse_with_cpus(text, "t.toml", &[0, 1]).map_err(|e| e.to_string())?;
        compile(&cfg, 7, &mut Slots::for_first_config(0, 0, 0, 0))
            .map_err(|e| format!("{} = {:?}: {}", e.key, e.value, e.message))
    }

    #[test]
    fn compiles_a_chain() {
        let t = compile_text(BASE).unwrap();
        assert_eq!(t.version, 7);
        assert_eq!(t.ports.len(), 1);
        let p = &t.ports[0];
        assert_eq!(p.hops.len(), 2);
        assert_eq!(p.hops[1].copies.as_slice(), &[1]);
        assert_eq!(p.translate_to, Some(8080));
        assert_eq!(p.dynamic, Some((1025, 1125)));
        // The gateway and the nat server are resolved by ARP.
        assert_eq!(t.neighbors.len(), 2);
        assert!(matches!(t.client.unwrap().gateway, NextMac::Neighbor(0)));
        assert!(matches!(t.devices[2].client_leg.mac, NextMac::Neighbor(1)));
    }

    fn expect_error(from: &str, to: &str, needles: &[&str]) {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let e = Config::parse_with_cpus(&text, "t.toml", &[0, 1])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("expected an error for {to:?}"));
        for n in needles {
            assert!(e.contains(n), "{e:?} does not mention {n:?}");
        }
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn errors_name_key_and_value() {
        expect_error(
            r#"hops = ["fw1", "web1"]"#,
            r#"hops = ["fw1", "web2"]"#,
            &["service[0].port[0].hops[1]", "web2", "no [[device]]"],
        );
        expect_error(
            r#"hops = ["fw1", "web1"]"#,
            r#"hops = ["fw1", "fw1", "web1"]"#,
            &["hops[1]", "fw1", "loop"],
        );
        expect_error(
            r#"hops = ["fw1", "web1"]"#,
            r#"hops = ["web1", "fw1"]"#,
            &["hops[0]", "web1", "nat"],
        );
        expect_error(
            "copies = { web1 = [\"ids1\"] }",
            "copies = { web1 = [\"fw1\"] }",
            &["copies.web1[0]", "fw1", "passive"],
        );
        expect_error(
            "copies = { web1 = [\"ids1\"] }",
            "copies = { web9 = [\"ids1\"] }",
            &["copies.web9", "web9"],
        );
        expect_error(
            r#"dynamic_ports = "1025-1125""#,
            r#"dynamic_ports = "1125-1025""#,
            &["dynamic_ports", "1125-1025", "upside down"],
        );
        expect_error(
            r#"gateway = "192.0.2.254""#,
            r#"gateway = "10.0.0.1""#,
            &["client.gateway", "10.0.0.1"],
        );
        expect_error(
            r#"gateway = "192.0.2.254""#,
            r#"gateway = "192.0.2.300""#,
            &["client.gateway", "192.0.2.300"],
        );
        expect_error(
            r#"ip = "203.0.113.10""#,
            r#"ip = "192.0.2.1""#,
            &["service[0].ip", "192.0.2.1"],
        );
        expect_error(
            "mode = \"nat\"\ninterface = \"devices\"\nipv4 = \"198.51.100.30\"",
            "mode = \"nat\"\ninterface = \"devices\"",
            &["device[2]", "nat"],
        );
        expect_error(
            "interface = \"devices\"\nmac = \"52:54:00:00:00:10\"",
            "interface = \"devicez\"\nmac = \"52:54:00:00:00:10\"",
            &["device[0].interface", "devicez"],
        );
        expect_error(
            "mode = \"nat\"",
            "mode = \"natt\"",
            &["device[2].mode", "natt"],
        );
        expect_error(
            "name = \"fw1\"",
            "name = \"ids1\"",
            &["device[1].name", "ids1", "another device"],
        );
    }

    #[test]
    fn overlapping_ranges_and_duplicate_ports() {
        let two = format!(
            "{BASE}\n[[service.port]]\nport = 25\nhops = [\"fw1\"]\ndynamic_ports = \"1100-1200\"\n"
        );
        let e = compile_text(&two).unwrap_err();
        assert!(
            e.contains("service[0].port[1].dynamic_ports")
                && e.contains("1100-1200")
                && e.contains("overlaps the dynamic ports 1025-1125 of service \"acme\" port 80"),
            "{e}"
        );
        let dup =
            format!("{BASE}\n[[service.port]]\nport = 80\nprotocol = \"both\"\nhops = [\"fw1\"]\n");
        let e = compile_text(&dup).unwrap_err();
        assert!(
            e.contains("service[0].port[1].port")
                && e.contains("TCP 203.0.113.10:80 is already used by service \"acme\" port 80"),
            "{e}"
        );
        // Port 80's range may not swallow port 25 of the same service IP.
        let holds = format!("{BASE}\n[[service.port]]\nport = 25\nhops = [\"fw1\"]\n")
            .replace("1025-1125", "20-30");
        let e = compile_text(&holds).unwrap_err();
        assert!(
            e.contains("service[0].port[0].dynamic_ports")
                && e.contains("20-30")
                && e.contains("contains port 25, which service \"acme\" port 25 uses"),
            "{e}"
        );
        // UDP 80 beside TCP 80 is fine.
        let udp =
            format!("{BASE}\n[[service.port]]\nport = 80\nprotocol = \"udp\"\nhops = [\"fw1\"]\n");
        assert_eq!(compile_text(&udp).unwrap().ports.len(), 2);
    }

    /// What an ACL table says for a few packets to every service IP, with
    /// every rule and default slot.
    fn acl_view(c: &Compiled, config: &Config) -> String {
        use crate::acl::PacketFields;
        let acl = c.tables.acl().expect("ACLs");
        let mut out = format!("{:?} {:?} ", c.acls.rules, c.acls.defaults);
        for s in &config.services {
            for src in [0xc612_0001u32, 0xc000_0201, 0x0a00_0001] {
                let p = PacketFields {
                    src,
                    protocol: 6,
                    src_port: 1234,
                    dst_port: 80,
                    has_ports: true,
                    tcp_flags: 0x02,
                };
                out += &format!(
                    "{:?} {:?};",
                    acl.lookup(0, u32::from(s.ip), &p),
                    c.tables.acl_default_slot(0, s.ip)
                );
            }
        }
        out
    }

    #[test]
    fn a_cached_compile_equals_a_cold_one() {
        let text = format!(
            "{BASE}
[[service]]
name = \"globex\"
ip = \"203.0.113.20\"
             [[service.port]]
port = 80
hops = [\"web1\"]
             [[acl]]
interface = \"client\"
service = \"acme\"
default = \"deny\"
             [[acl.rule]]
priority = 10
src = \"198.18.0.0/15\"
action = \"allow\"
             [[acl]]
interface = \"client\"
service = \"globex\"
default = \"allow\"
             [[acl.rule]]
priority = 10
src = \"192.0.2.0/24\"
action = \"deny\"
"
        );
        let old = Config::parse_with_cpus(&text, "t.toml", &[0, 1]).unwrap();
        let mut slots = Slots::for_first_config(0, 0, 0, 0);
        let (_, cache) =
            compile_all_cached(&old, 1, &mut slots, &CompileCache::default(), false).unwrap();
        // One set changes (a rule added), one stays; the services stay.
        let mut new = old.clone();
        new.acls[0].rules.push(crate::control::acls::AclRuleConfig {
            priority: 5,
            src: Some("198.18.0.1".into()),
            protocol: Default::default(),
            dst_ports: None,
            src_ports: None,
            tcp_flags: None,
            action: crate::control::acls::ActionConfig::Deny,
        });
        let (cached, next) = compile_all_cached(&new, 2, &mut slots, &cache, true).unwrap();
        let cold = compile_all(&new, 2, &mut slots).unwrap();
        assert_eq!(acl_view(&cached, &new), acl_view(&cold, &new));
        assert_ne!(
            acl_view(&cached, &new),
            acl_view(&compile_all(&old, 2, &mut slots).unwrap(), &old),
            "the change shows"
        );
        assert_eq!(cached.tables.version, 2);
        assert_eq!(cached.tables.ports.len(), cold.tables.ports.len());
        // The unchanged set is the cached one; the changed one is new.
        let same = |k| Arc::ptr_eq(&cache.acls.sets[&k], &next.acls.sets[&k]);
        let acme = (0, Ipv4Addr::new(203, 0, 113, 10));
        let globex = (0, Ipv4Addr::new(203, 0, 113, 20));
        assert!(!same(acme));
        assert!(same(globex));
    }

    /// BASE plus fw2 and fw3, with `extra` appended.
    fn failover_config(extra: &str) -> Config {
        let text = format!(
            "{BASE}\n[[device]]\nname = \"fw2\"\ninterface = \"devices\"\nmac = \"52:54:00:00:00:12\"\n\
             [[device]]\nname = \"fw3\"\ninterface = \"devices\"\nmac = \"52:54:00:00:00:13\"\n{extra}"
        );
        let mut c = Config::parse_with_cpus(&text, "t.toml", &[0, 1]).unwrap();
        // The tests set states and alternates on the parsed devices.
        c.devices.iter_mut().for_each(|d| d.state = DeviceState::Up);
        c
    }

    fn device_mut<'a>(c: &'a mut Config, name: &str) -> &'a mut DeviceConfig {
        c.devices.iter_mut().find(|d| d.name == name).unwrap()
    }

    fn first_hop(c: &Config) -> String {
        let t = compile(c, 1, &mut Slots::for_first_config(0, 0, 0, 0)).unwrap();
        t.devices[t.ports[0].hops[0].device as usize].name.clone()
    }

    #[test]
    fn alternates_are_followed_past_devices_that_are_down() {
        let mut c = failover_config("");
        assert_eq!(first_hop(&c), "fw1");
        device_mut(&mut c, "fw1").alternate = Some("fw2".into());
        device_mut(&mut c, "fw2").alternate = Some("fw3".into());
        device_mut(&mut c, "fw1").state = DeviceState::Down;
        assert_eq!(first_hop(&c), "fw2");
        device_mut(&mut c, "fw2").state = DeviceState::Down;
        assert_eq!(first_hop(&c), "fw3");
        assert_eq!(takeovers(&c).unwrap()["fw1"], Some("fw3".to_string()));
        // A ring of alternates all down: nothing takes over; fw1 stays.
        device_mut(&mut c, "fw3").state = DeviceState::Down;
        device_mut(&mut c, "fw3").alternate = Some("fw1".into());
        assert_eq!(takeovers(&c).unwrap()["fw1"], None);
        assert_eq!(first_hop(&c), "fw1");
    }

    #[test]
    fn a_pool_takes_over_with_its_first_member_that_is_up() {
        let mut c =
            failover_config("[[pool]]\nname = \"fws\"\ndevices = [\"fw1\", \"fw2\", \"fw3\"]\n");
        device_mut(&mut c, "fw1").state = DeviceState::Down;
        device_mut(&mut c, "fw2").state = DeviceState::Down;
        assert_eq!(first_hop(&c), "fw3");
        // An explicit alternate naming the pool means the same.
        device_mut(&mut c, "fw1").alternate = Some("fws".into());
        assert_eq!(first_hop(&c), "fw3");
    }

    #[test]
    fn pools_and_alternates_name_what_exists() {
        let mut c = failover_config("");
        c.pools.push(PoolConfig {
            name: "fws".into(),
            devices: vec!["fw1".into(), "fw9".into()],
        });
        let e = takeovers(&c).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.value.as_deref()),
            ("pool[0].devices[1]", Some("\"fw9\""))
        );
        c.pools[0].devices = vec!["fw1".into()];
        device_mut(&mut c, "fw2").alternate = Some("fw2".into());
        let e = takeovers(&c).unwrap_err();
        assert!(e.key.ends_with(".alternate"), "{e:?}");
        device_mut(&mut c, "fw2").alternate = Some("nothing".into());
        assert!(takeovers(&c)
            .unwrap_err()
            .message
            .contains("no [[device]] or [[pool]]"));
        c.pools[0].name = "fw2".into();
        device_mut(&mut c, "fw2").alternate = None;
        assert!(takeovers(&c)
            .unwrap_err()
            .message
            .contains("a device has this name"));
    }
}
