//! Stable counter slots across table versions.
//!
//! Workers count into fixed arrays allocated at start. A service port, a
//! device or an ACL rule keeps its slot for as long as seqd runs, whatever
//! else a new version adds, removes or reorders, so a reload never moves one
//! customer's packets onto another's bill. Slots are never reused within a
//! run (a removed service's slot stays retired); when a kind runs out, the
//! update is refused and the running tables stay as they were.

use std::collections::HashMap;
use std::hash::Hash;

/// Slots of one kind of counted thing.
#[derive(Debug, Clone)]
pub struct SlotMap<K> {
    slots: HashMap<K, u32>,
    capacity: u32,
}

impl<K: Eq + Hash + Clone> SlotMap<K> {
    pub fn new(capacity: usize) -> Self {
        SlotMap {
            slots: HashMap::new(),
            capacity: capacity.min(u32::MAX as usize) as u32,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The slot of `key`, allocating the next free one for a new key.
    pub fn slot(&mut self, key: &K) -> Option<u32> {
        if let Some(&s) = self.slots.get(key) {
            return Some(s);
        }
        let next = self.slots.len() as u32;
        if next >= self.capacity {
            return None;
        }
        self.slots.insert(key.clone(), next);
        Some(next)
    }
}

/// Everything counted per item, by kind.
#[derive(Debug, Clone)]
pub struct Slots {
    /// (service name, protocol number, port).
    pub service_ports: SlotMap<(String, u8, u16)>,
    /// Device name.
    pub devices: SlotMap<String>,
    /// (interface, service name or None, priority).
    pub acl_rules: SlotMap<(String, Option<String>, u32)>,
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
}
