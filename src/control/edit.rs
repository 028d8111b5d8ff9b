//! Edits the REST API makes to the running tables, one object at a time:
//! devices, pools and services created, replaced or deleted, a device
//! taken down or replaced everywhere, a service replicated under a new
//! service IP. Each edit is a pure function from the running config to the
//! next one; [`super::state::ControlState::apply`] then compiles and
//! publishes it whole, or refuses it and nothing changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::acls::AclConfig;
use super::config::Config;
use super::services::{DeviceConfig, DeviceState, PoolConfig, ServiceConfig};
use super::state::ChangeError;

/// Why a request was refused, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    /// The JSON path (or config key) of the bad value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For 409: what still uses the object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

impl ApiError {
    pub fn bad(key: impl Into<String>, value: Option<String>, message: impl Into<String>) -> Self {
        let mut e = ApiError::status(400, message);
        e.key = key.into();
        e.value = value;
        e
    }

    pub fn status(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error: message.into(),
            key: String::new(),
            value: None,
            used_by: Vec::new(),
        }
    }

    pub fn not_found(what: &str, name: &str) -> Self {
        ApiError::status(404, format!("no {what} {name:?}"))
    }

    pub fn conflict(message: impl Into<String>, used_by: Vec<String>) -> Self {
        let mut e = ApiError::status(409, message);
        e.used_by = used_by;
        e
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        let mut out = ApiError::bad(e.key.clone(), e.value.clone(), e.to_string());
        if e.key.starts_with("control.state_dir") {
            // Not the request's fault: the change could not be kept.
            out.status = 500;
        }
        out
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

/// Parses a JSON body into `T`; errors name the JSON path. With `name`, the
/// body's `"name"` may be left out (it comes from the URL) but may not
/// differ from it.
pub fn parse<T: DeserializeOwned>(body: &[u8], name: Option<&str>) -> Result<T, ApiError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("", None, format!("the body is not JSON: {e}")))?;
    if let Some(name) = name {
        let obj = v
            .as_object_mut()
            .ok_or_else(|| ApiError::bad("", None, "the body must be a JSON object"))?;
        match obj.get("name") {
            None => {
                obj.insert("name".into(), Value::String(name.into()));
            }
            Some(Value::String(n)) if n == name => {}
            Some(other) => {
                return Err(ApiError::bad(
                    "name",
                    Some(other.to_string()),
                    format!("the name in the body must be the one in the URL ({name:?})"),
                ))
            }
        }
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let key = e.path().to_string();
        ApiError::bad(
            if key == "." { String::new() } else { key },
            None,
            e.inner().to_string(),
        )
    })
}

/// What uses device `name`: services (by hop, copy or alert), devices (as
/// alternate) and pools (as member).
pub fn device_users(config: &Config, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in &config.services {
        let uses = s.ports.iter().any(|p| {
            p.hops.iter().any(|h| h == name)
                || p.copies.values().flatten().any(|c| c == name)
                || p.alerts_to.as_deref() == Some(name)
        });
        if uses {
            out.push(format!("service {}", s.name));
        }
    }
    for d in &config.devices {
        if d.alternate.as_deref() == Some(name) {
            out.push(format!("device {} (alternate)", d.name));
        }
    }
    for p in &config.pools {
        if p.devices.iter().any(|m| m == name) {
            out.push(format!("pool {}", p.name));
        }
    }
    out
}

/// Creates device `d` (409 if one has its name) or, with `replace`, puts it
/// in place of the device of that name. Returns true when it is new.
pub fn put_device(config: &mut Config, d: DeviceConfig, replace: bool) -> Result<bool, ApiError> {
    if config.pools.iter().any(|p| p.name == d.name) {
        return Err(ApiError::conflict(
            format!("a pool is named {:?}", d.name),
            vec![format!("pool {}", d.name)],
        ));
    }
    match config.devices.iter_mut().find(|x| x.name == d.name) {
        Some(_) if !replace => Err(ApiError::conflict(
            format!(
                "device {:?} exists (PUT /v1/devices/{} replaces it)",
                d.name, d.name
            ),
            Vec::new(),
        )),
        Some(x) => {
            *x = d;
            Ok(false)
        }
        None => {
            config.devices.push(d);
            Ok(true)
        }
    }
}

/// Deletes device `name`: 404 if there is none, 409 while anything uses it.
pub fn delete_device(config: &mut Config, name: &str) -> Result<(), ApiError> {
    let at = config
        .devices
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found("device", name))?;
    let users = device_users(config, name);
    if !users.is_empty() {
        return Err(ApiError::conflict(
            format!("device {name:?} is still in use"),
            users,
        ));
    }
    config.devices.remove(at);
    Ok(())
}

/// Marks device `name` up or down.
pub fn set_device_state(
    config: &mut Config,
    name: &str,
    state: DeviceState,
) -> Result<(), ApiError> {
    let d = config
        .devices
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found("device", name))?;
    d.state = state;
    Ok(())
}

/// Puts device `with` in place of `old` in every service that uses it (hops,
/// copies, alerts): the services regenerated in one change. Returns their
/// names.
pub fn replace_device(config: &mut Config, old: &str, with: &str) -> Result<Vec<String>, ApiError> {
    if !config.devices.iter().any(|d| d.name == old) {
        return Err(ApiError::not_found("device", old));
    }
    if !config.devices.iter().any(|d| d.name == with) {
        return Err(ApiError::bad(
            "with",
            Some(q(with)),
            "no device has this name",
        ));
    }
    if old == with {
        return Err(ApiError::bad(
            "with",
            Some(q(with)),
            "a device cannot replace itself",
        ));
    }
    let swap = |n: &mut String| {
        if n == old {
            *n = with.to_string();
        }
    };
    let mut affected = Vec::new();
    for s in &mut config.services {
        let before = s.clone();
        for p in &mut s.ports {
            p.hops.iter_mut().for_each(swap);
            p.copies = std::mem::take(&mut p.copies)
                .into_iter()
                .map(|(mut at, mut list)| {
                    swap(&mut at);
                    list.iter_mut().for_each(swap);
                    (at, list)
                })
                .collect();
            if let Some(a) = &mut p.alerts_to {
                swap(a);
            }
        }
        if *s != before {
            affected.push(s.name.clone());
        }
    }
    if affected.is_empty() {
        return Err(ApiError::conflict(
            format!("no service uses device {old:?}: nothing to replace"),
            Vec::new(),
        ));
    }
    Ok(affected)
}

/// Creates pool `p` or, with `replace`, puts it in place of the pool of that
/// name. Returns true when it is new.
pub fn put_pool(config: &mut Config, p: PoolConfig, replace: bool) -> Result<bool, ApiError> {
    if config.devices.iter().any(|d| d.name == p.name) {
        return Err(ApiError::conflict(
            format!("a device is named {:?}", p.name),
            vec![format!("device {}", p.name)],
        ));
    }
    match config.pools.iter_mut().find(|x| x.name == p.name) {
        Some(_) if !replace => Err(ApiError::conflict(
            format!(
                "pool {:?} exists (PUT /v1/pools/{} replaces it)",
                p.name, p.name
            ),
            Vec::new(),
        )),
        Some(x) => {
            *x = p;
            Ok(false)
        }
        None => {
            config.pools.push(p);
            Ok(true)
        }
    }
}

/// Deletes pool `name`: 404 if there is none, 409 while a device names it
/// as its alternate.
pub fn delete_pool(config: &mut Config, name: &str) -> Result<(), ApiError> {
    let at = config
        .pools
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found("pool", name))?;
    let users: Vec<String> = config
        .devices
        .iter()
        .filter(|d| d.alternate.as_deref() == Some(name))
        .map(|d| format!("device {} (alternate)", d.name))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(
            format!("pool {name:?} is still in use"),
            users,
        ));
    }
    config.pools.remove(at);
    Ok(())
}

/// Creates service `s` or, with `replace`, puts it in place of the service
/// of that name (its ACLs stay). Returns true when it is new.
pub fn put_service(config: &mut Config, s: ServiceConfig, replace: bool) -> Result<bool, ApiError> {
    match config.services.iter_mut().find(|x| x.name == s.name) {
        Some(_) if !replace => Err(ApiError::conflict(
            format!(
                "service {:?} exists (PUT /v1/services/{} replaces it)",
                s.name, s.name
            ),
            Vec::new(),
        )),
        Some(x) => {
            *x = s;
            Ok(false)
        }
        None => {
            config.services.push(s);
            Ok(true)
        }
    }
}

/// Deletes service `name` and its ACLs.
pub fn delete_service(config: &mut Config, name: &str) -> Result<(), ApiError> {
    let at = config
        .services
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found("service", name))?;
    config.services.remove(at);
    config.acls.retain(|a| a.service.as_deref() != Some(name));
    Ok(())
}

/// Copies service `name`, its sequences and its ACLs, as service `new_name`
/// on service IP `ip`.
pub fn replicate_service(
    config: &mut Config,
    name: &str,
    new_name: &str,
    ip: Ipv4Addr,
) -> Result<(), ApiError> {
    let original = config
        .services
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found("service", name))?;
    if config.services.iter().any(|s| s.name == new_name) {
        return Err(ApiError::conflict(
            format!("service {new_name:?} exists"),
            Vec::new(),
        ));
    }
    if let Some(other) = config.services.iter().find(|s| s.ip == ip) {
        return Err(ApiError::conflict(
            format!("service IP {ip} is service {:?}'s", other.name),
            vec![format!("service {}", other.name)],
        ));
    }
    let mut copy = original.clone();
    copy.name = new_name.to_string();
    copy.ip = ip;
    let acls: Vec<AclConfig> = config
        .acls
        .iter()
        .filter(|a| a.service.as_deref() == Some(name))
        .cloned()
        .map(|mut a| {
            a.service = Some(new_name.to_string());
            a
        })
        .collect();
    config.services.push(copy);
    config.acls.extend(acls);
    Ok(())
}

/// Added, removed and changed names of one kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NameChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NameChanges {
    fn of<'a, T: PartialEq + 'a>(
        old: impl Iterator<Item = (&'a str, &'a T)>,
        new: impl Iterator<Item = (&'a str, &'a T)>,
    ) -> Self {
        let old: HashMap<&str, &T> = old.collect();
        let new: BTreeMap<&str, &T> = new.collect();
        let mut c = NameChanges::default();
        for (name, n) in &new {
            match old.get(name) {
                None => c.added.push(name.to_string()),
                Some(o) if o != n => c.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        let mut removed: Vec<String> = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        removed.sort();
        c.removed = removed;
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What a change does to the running tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub services: NameChanges,
    pub devices: NameChanges,
    pub pools: NameChanges,
    /// Services whose ACLs change ("(provider)" for the provider-wide set).
    pub acls: Vec<String>,
    pub client: bool,
    /// Devices that are down in the new tables, and what takes over for each
    /// (null: nothing can; its sequences keep it).
    pub takeovers: BTreeMap<String, Option<String>>,
}

impl Changes {
    /// From `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Changes {
        // Keyed by borrowed names: a change costs no copy of every name.
        fn acl_sets(c: &Config) -> HashMap<&str, Vec<&AclConfig>> {
            let mut m: HashMap<&str, Vec<&AclConfig>> = HashMap::with_capacity(c.acls.len());
            for a in &c.acls {
                m.entry(a.service.as_deref().unwrap_or("(provider)"))
                    .or_default()
                    .push(a);
            }
            m
        }
        let (oa, na) = (acl_sets(old), acl_sets(new));
        let keys: BTreeSet<&str> = oa
            .iter()
            .filter(|(k, v)| na.get(*k) != Some(*v))
            .map(|(k, _)| *k)
            .chain(na.keys().filter(|k| !oa.contains_key(*k)).copied())
            .collect();
        Changes {
            services: NameChanges::of(
                old.services.iter().map(|s| (s.name.as_str(), s)),
                new.services.iter().map(|s| (s.name.as_str(), s)),
            ),
            devices: NameChanges::of(
                old.devices.iter().map(|d| (d.name.as_str(), d)),
                new.devices.iter().map(|d| (d.name.as_str(), d)),
            ),
            pools: NameChanges::of(
                old.pools.iter().map(|p| (p.name.as_str(), p)),
                new.pools.iter().map(|p| (p.name.as_str(), p)),
            ),
            acls: keys.into_iter().map(str::to_string).collect(),
            client: old.client != new.client,
            takeovers: super::services::takeovers(new).unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.devices.is_empty()
            && self.pools.is_empty()
            && self.acls.is_empty()
            && !self.client
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
name = "fw2"
interface = "devices"
mac = "52:54:00:00:00:11"
[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:30"
[[pool]]
name = "firewalls"
devices = ["fw1", "fw2"]
[[service]]
name = "acme"
ip = "203.0.113.10"
[[service.port]]
port = 80
hops = ["fw1", "web1"]
[[service]]
name = "globex"
ip = "203.0.113.20"
[[service.port]]
port = 443
hops = ["web1"]
[[acl]]
interface = "client"
service = "acme"
default = "deny"
[[acl.rule]]
priority = 10
src = "198.18.0.0/15"
action = "allow"
"#;

    fn base() -> Config {
        Config::parse_with_cpus(BASE, "test", &[0, 1]).unwrap()
    }

    #[test]
    fn a_device_in_use_cannot_be_deleted() {
        let mut c = base();
        let e = delete_device(&mut c, "fw1").unwrap_err();
        assert_eq!(e.status, 409);
        assert_eq!(e.used_by, vec!["service acme", "pool firewalls"]);
        assert_eq!(delete_device(&mut c, "nope").unwrap_err().status, 404);
        c.pools.clear();
        c.services.retain(|s| s.name != "acme");
        delete_device(&mut c, "fw1").unwrap();
        assert!(!c.devices.iter().any(|d| d.name == "fw1"));
    }

    #[test]
    fn replace_regenerates_every_service_using_the_device() {
        let mut c = base();
        assert_eq!(
            replace_device(&mut c, "web1", "fw2").unwrap(),
            vec!["acme", "globex"]
        );
        assert_eq!(c.services[0].ports[0].hops, vec!["fw1", "fw2"]);
        assert_eq!(c.services[1].ports[0].hops, vec!["fw2"]);
        assert_eq!(
            replace_device(&mut c, "web1", "fw1").unwrap_err().status,
            409
        );
        assert_eq!(
            replace_device(&mut c, "fw1", "ghost").unwrap_err().key,
            "with"
        );
    }

    #[test]
    fn replicate_copies_sequences_and_acls_under_the_new_ip() {
        let mut c = base();
        replicate_service(&mut c, "acme", "acme-eu", "203.0.113.11".parse().unwrap()).unwrap();
        let copy = c.services.iter().find(|s| s.name == "acme-eu").unwrap();
        assert_eq!(copy.ip, Ipv4Addr::new(203, 0, 113, 11));
        assert_eq!(copy.ports, c.services[0].ports);
        let acls: Vec<_> = c
            .acls
            .iter()
            .filter(|a| a.service.as_deref() == Some("acme-eu"))
            .collect();
        assert_eq!(acls.len(), 1);
        assert_eq!(acls[0].rules, c.acls[0].rules);
        let e =
            replicate_service(&mut c, "acme", "x", "203.0.113.20".parse().unwrap()).unwrap_err();
        assert_eq!(
            (e.status, e.used_by.clone()),
            (409, vec!["service globex".into()])
        );
    }

    #[test]
    fn deleting_a_service_deletes_its_acls() {
        let mut c = base();
        delete_service(&mut c, "acme").unwrap();
        assert!(c.acls.is_empty());
        assert_eq!(delete_service(&mut c, "acme").unwrap_err().status, 404);
    }

    #[test]
    fn body_name_comes_from_the_url_and_must_agree() {
        let d: DeviceConfig = parse(
            br#"{"interface":"devices","mac":"52:54:00:00:00:12"}"#,
            Some("fw3"),
        )
        .unwrap();
        assert_eq!(d.name, "fw3");
        let e = parse::<DeviceConfig>(br#"{"name":"fw4","interface":"devices"}"#, Some("fw3"))
            .unwrap_err();
        assert_eq!((e.status, e.key.as_str()), (400, "name"));
        let e = parse::<DeviceConfig>(br#"{"interface":"devices","mode":"bridge"}"#, Some("x"))
            .unwrap_err();
        assert_eq!(e.key, "mode");
        assert!(e.error.contains("bridge"), "{}", e.error);
    }

    #[test]
    fn changes_name_what_differs() {
        let old = base();
        let mut new = old.clone();
        set_device_state(&mut new, "fw1", DeviceState::Down).unwrap();
        delete_service(&mut new, "globex").unwrap();
        new.acls.clear();
        let c = Changes::between(&old, &new);
        assert_eq!(c.devices.changed, vec!["fw1"]);
        assert_eq!(c.services.removed, vec!["globex"]);
        assert_eq!(c.acls, vec!["acme"]);
        assert_eq!(c.takeovers.get("fw1"), Some(&Some("fw2".to_string())));
        assert!(Changes::between(&old, &old).is_empty());
    }
}
