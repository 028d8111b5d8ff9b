//! The neighbor (ARP) table: the MACs of next hops that seqd knows only by
//! IPv4 address (the client-side gateway, devices configured without a MAC).
//!
//! Slots are fixed when the tables are compiled; their state is atomics that
//! any worker may read per packet and update when an ARP reply arrives.
//! Worker 0 sends the requests: at once for an unresolved slot, then every
//! [`RETRY_MS`] until answered; a resolved entry is refreshed after
//! [`REFRESH_S`] and forgotten when not confirmed for [`EXPIRE_S`].

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::packet::MacAddr;

pub const RETRY_MS: u64 = 1000;
pub const REFRESH_S: u64 = 60;
pub const EXPIRE_S: u64 = 180;

/// What a slot resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborKey {
    pub iface: u16,
    pub vlan: Option<u16>,
    pub ip: Ipv4Addr,
}

#[derive(Default, Debug)]
struct SlotState {
    /// 0: unresolved; else VALID | MAC in the low 48 bits.
    mac: AtomicU64,
    /// TSC of the last reply.
    confirmed: AtomicU64,
    /// TSC of the last request sent (0: never).
    requested: AtomicU64,
}

const VALID: u64 = 1 << 63;

#[derive(Default, Debug)]
pub struct Neighbors {
    keys: Box<[NeighborKey]>,
    state: Box<[SlotState]>,
}

/// What worker 0 should do about one slot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Request,
}

fn pack(mac: MacAddr) -> u64 {
    let m = mac.0;
    VALID | u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

fn unpack(v: u64) -> Option<MacAddr> {
    if v & VALID == 0 {
        return None;
    }
    let b = v.to_be_bytes();
    Some(MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]))
}

impl Neighbors {
    pub fn new(keys: Vec<NeighborKey>) -> Neighbors {
        let state = keys.iter().map(|_| SlotState::default()).collect();
        Neighbors {
            keys: keys.into_boxed_slice(),
            state,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, slot: u32) -> NeighborKey {
        self.keys[slot as usize]
    }

    pub fn keys(&self) -> &[NeighborKey] {
        &self.keys
    }

    #[inline]
    pub fn mac(&self, slot: u32) -> Option<MacAddr> {
        unpack(self.state.get(slot as usize)?.mac.load(Relaxed))
    }

    /// The slot resolving `ip` on this interface and VLAN.
    pub fn slot_of(&self, iface: u16, vlan: Option<u16>, ip: Ipv4Addr) -> Option<u32> {
        // Few slots (a gateway and the devices known by IP): a scan beats a map.
        self.keys
            .iter()
            .position(|k| k.iface == iface && k.vlan == vlan && k.ip == ip)
            .map(|i| i as u32)
    }

    /// Records an ARP answer for `slot`.
    pub fn learn(&self, slot: u32, mac: MacAddr, now_tsc: u64) {
        if let Some(s) = self.state.get(slot as usize) {
            s.mac.store(pack(mac), Relaxed);
            s.confirmed.store(now_tsc, Relaxed);
        }
    }

    /// Copies what `old` (an earlier version's table) learnt for the same
    /// keys, so a new version starts resolved.
    pub fn carry_over(&self, old: &Neighbors) {
        for (i, k) in self.keys.iter().enumerate() {
            let Some(j) = old.keys.iter().position(|o| o == k) else {
                continue;
            };
            let (from, to) = (&old.state[j], &self.state[i]);
            to.mac.store(from.mac.load(Relaxed), Relaxed);
            to.confirmed.store(from.confirmed.load(Relaxed), Relaxed);
            to.requested.store(from.requested.load(Relaxed), Relaxed);
        }
    }

    /// Sets a MAC for a slot without ARP (tests, static overrides).
    pub fn set_static(&self, slot: u32, mac: MacAddr) {
        self.learn(slot, mac, u64::MAX / 2);
    }

    /// Whether a request for `slot` is due at `now_tsc`; if so, records that
    /// it is being sent. Expires entries not confirmed in time.
    pub fn poll(&self, slot: u32, now_tsc: u64, tsc_hz: u64) -> Due {
        let Some(s) = self.state.get(slot as usize) else {
            return Due::Nothing;
        };
        let requested = s.requested.load(Relaxed);
        let retry_due =
            requested == 0 || now_tsc.saturating_sub(requested) >= tsc_hz / 1000 * RETRY_MS;
        let resolved = s.mac.load(Relaxed) & VALID != 0;
        let age = now_tsc.saturating_sub(s.confirmed.load(Relaxed));
        if resolved && age >= tsc_hz.saturating_mul(EXPIRE_S) {
            s.mac.store(0, Relaxed);
        }
        let want = !resolved || age >= tsc_hz.saturating_mul(REFRESH_S);
        if want && retry_due {
            s.requested.store(now_tsc.max(1), Relaxed);
            Due::Request
        } else {
            Due::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Neighbors {
        Neighbors::new(vec![NeighborKey {
            iface: 0,
            vlan: None,
            ip: Ipv4Addr::new(192, 0, 2, 254),
        }])
    }

    #[test]
    fn request_retry_learn_refresh_expire() {
        let hz = 1_000_000; // 1 tick = 1 µs
        let n = one();
        assert_eq!(n.mac(0), None);
        assert_eq!(n.poll(0, 10, hz), Due::Request);
        assert_eq!(n.poll(0, 500_000, hz), Due::Nothing, "retry waits a second");
        assert_eq!(n.poll(0, 1_000_010, hz), Due::Request);
        let mac = MacAddr([2, 0, 0, 0, 0xfe, 0xfe]);
        n.learn(0, mac, 1_100_000);
        assert_eq!(n.mac(0), Some(mac));
        assert_eq!(n.poll(0, 30_000_000, hz), Due::Nothing, "fresh entry");
        assert_eq!(
            n.poll(0, 61_200_000, hz),
            Due::Request,
            "refresh after 60 s"
        );
        assert_eq!(n.mac(0), Some(mac), "still usable while refreshing");
        assert_eq!(n.poll(0, 182_000_000, hz), Due::Request);
        assert_eq!(n.mac(0), None, "expired after 180 s unconfirmed");
        assert_eq!(n.slot_of(0, None, Ipv4Addr::new(192, 0, 2, 254)), Some(0));
        assert_eq!(n.slot_of(1, None, Ipv4Addr::new(192, 0, 2, 254)), None);
    }
}
