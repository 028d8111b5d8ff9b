//! Stable counter slots across table versions.
//!
//! Workers count into fixed arrays allocated at start. A service port, a
//! device or an ACL rule keeps its slot for as long as seqd runs, whatever
//! else a new version adds, removes or reorders, so a reload never moves one
//! customer's packets onto another's bill. Slots are never reused within a
//! run (a removed service's slot stays retired); when a kind runs out, the
//! update is refused and the running tables stay as they were.

use std::hash::Hash;

use hashbrown::{Equivalent, HashMap};

/// A borrowed form of a slot key: looked up without building the owned key
/// (a compile looks up every service port and ACL rule of the config, and
/// cloning their names each time was a third of an ACL compile).
pub trait SlotKey<K>: Hash + Equivalent<K> {
    fn to_key(&self) -> K;
}

impl<K: Hash + Eq + Copy> SlotKey<K> for K {
    fn to_key(&self) -> K {
        *self
    }
}

impl SlotKey<String> for str {
    fn to_key(&self) -> String {
        self.to_string()
    }
}

/// (service name, protocol number, port), borrowed. Hashes exactly as the
/// owned tuple does (fields in order), which the lookup relies on.
#[derive(Hash)]
pub struct PortKey<'a>(pub &'a str, pub u8, pub u16);

impl Equivalent<(String, u8, u16)> for PortKey<'_> {
    fn equivalent(&self, k: &(String, u8, u16)) -> bool {
        self.0 == k.0 && self.1 == k.1 && self.2 == k.2
    }
}

impl SlotKey<(String, u8, u16)> for PortKey<'_> {
    fn to_key(&self) -> (String, u8, u16) {
        (self.0.to_string(), self.1, self.2)
    }
}

/// (interface, service name or None), borrowed.
#[derive(Hash)]
pub struct SetKey<'a>(pub &'a str, pub Option<&'a str>);

impl Equivalent<(String, Option<String>)> for SetKey<'_> {
    fn equivalent(&self, k: &(String, Option<String>)) -> bool {
        self.0 == k.0 && self.1 == k.1.as_deref()
    }
}

impl SlotKey<(String, Option<String>)> for SetKey<'_> {
    fn to_key(&self) -> (String, Option<String>) {
        (self.0.to_string(), self.1.map(str::to_string))
    }
}

/// Slots of one kind of counted thing.
#[derive(Debug, Clone)]
pub struct SlotMap<K> {
    slots: HashMap<K, u32>,
    capacity: u32,
}

impl<K: Eq + Hash> SlotMap<K> {
    pub fn new(capacity: usize) -> Self {
        SlotMap {
            slots: HashMap::new(),
            capacity: capacity.min(u32::MAX as usize) as u32,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Slots given so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of `key`, allocating the next free one for a new key.
    pub fn slot<Q: SlotKey<K> + ?Sized>(&mut self, key: &Q) -> Option<u32> {
        if let Some(&s) = self.slots.get(key) {
            return Some(s);
        }
        let next = self.slots.len() as u32;
        if next >= self.capacity {
            return None;
        }
        self.slots.insert(key.to_key(), next);
        Some(next)
    }

    /// Forgets every slot given since there were `len` (slots are given in
    /// order, so those are the ones numbered `len` and up).
    fn truncate(&mut self, len: usize) {
        if self.slots.len() > len {
            self.slots.retain(|_, s| (*s as usize) < len);
        }
    }
}

/// How many slots of each kind were given at some point: a refused change
/// goes back to it ([`Slots::rollback`]) instead of compiling on a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsMark([usize; 4]);

/// Everything counted per item, by kind.
#[derive(Debug, Clone)]
pub struct Slots {
    /// (service name, protocol number, port).
    pub service_ports: SlotMap<(String, u8, u16)>,
    /// Device name.
    pub devices: SlotMap<String>,
    /// (the slot of the rule's set in `acl_defaults`, priority): a set
    /// keeps its slot for the run, so a rule keyed by it does too, and
    /// finding it compares two integers instead of two names (a million
    /// rules' name compares were most of an ACL compile).
    pub acl_rules: SlotMap<(u32, u32)>,
    /// (interface, service name or None).
    pub acl_defaults: SlotMap<(String, Option<String>)>,
}

impl Slots {
    /// Room for at least `headroom` times what the first config needs (and
    /// never less than a small floor), so later versions can grow.
    pub fn with_capacity(
        service_ports: usize,
        devices: usize,
        acl_rules: usize,
        acl_defaults: usize,
    ) -> Slots {
        Slots {
            service_ports: SlotMap::new(service_ports),
            devices: SlotMap::new(devices),
            acl_rules: SlotMap::new(acl_rules),
            acl_defaults: SlotMap::new(acl_defaults),
        }
    }

    /// Where the slots are now.
    pub fn mark(&self) -> SlotsMark {
        SlotsMark([
            self.service_ports.len(),
            self.devices.len(),
            self.acl_rules.len(),
            self.acl_defaults.len(),
        ])
    }

    /// Forgets the slots given since `mark`: what a refused or only
    /// validated change allocated. Costs a pass over the slots only when
    /// something was allocated.
    pub fn rollback(&mut self, mark: SlotsMark) {
        let [p, d, r, s] = mark.0;
        self.service_ports.truncate(p);
        self.devices.truncate(d);
        self.acl_rules.truncate(r);
        self.acl_defaults.truncate(s);
    }

    /// Capacity for a run whose first config has these counts.
    pub fn for_first_config(
        service_ports: usize,
        devices: usize,
        acl_rules: usize,
        acl_defaults: usize,
    ) -> Slots {
        let room = |n: usize, floor: usize| (n * 4).max(floor);
        Slots::with_capacity(
            room(service_ports, 4096),
            room(devices, 1024).min(u16::MAX as usize),
            room(acl_rules, 16384),
            room(acl_defaults, 1024),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_bounded() {
        let mut m = SlotMap::new(3);
        assert_eq!(m.slot(&"a"), Some(0));
        assert_eq!(m.slot(&"b"), Some(1));
        assert_eq!(m.slot(&"a"), Some(0), "same key, same slot");
        assert_eq!(m.slot(&"c"), Some(2));
        assert_eq!(m.slot(&"d"), None, "full");
        assert_eq!(m.slot(&"b"), Some(1), "known keys still resolve when full");
    }

    #[test]
    fn borrowed_keys_find_owned_ones() {
        let mut s = Slots::with_capacity(10, 10, 10, 10);
        assert_eq!(s.service_ports.slot(&PortKey("acme", 6, 80)), Some(0));
        assert_eq!(s.service_ports.slot(&PortKey("acme", 17, 80)), Some(1));
        assert_eq!(s.service_ports.slot(&PortKey("acme", 6, 80)), Some(0));
        assert_eq!(s.acl_rules.slot(&(0, 10)), Some(0));
        assert_eq!(s.acl_rules.slot(&(1, 10)), Some(1));
        assert_eq!(s.acl_rules.slot(&(0, 10)), Some(0));
        assert_eq!(s.acl_defaults.slot(&SetKey("client", Some("a"))), Some(0));
        assert_eq!(s.acl_defaults.slot(&SetKey("client", Some("a"))), Some(0));
        assert_eq!(s.devices.slot("fw1"), Some(0));
        assert_eq!(s.devices.slot("fw1"), Some(0));
        assert_eq!(s.service_ports.len(), 2);
        assert_eq!(s.acl_rules.len(), 2);
    }

    #[test]
    fn rollback_forgets_what_came_after_the_mark() {
        let mut s = Slots::with_capacity(10, 10, 10, 10);
        s.devices.slot("fw1");
        let mark = s.mark();
        s.devices.slot("fw2");
        s.service_ports.slot(&PortKey("acme", 6, 80));
        s.rollback(mark);
        assert_eq!(s.mark(), mark);
        assert_eq!(s.devices.slot("fw1"), Some(0));
        assert_eq!(s.devices.slot("web"), Some(1), "fw2's slot is free again");
        assert_eq!(s.service_ports.slot(&PortKey("b", 6, 80)), Some(0));
    }
}
