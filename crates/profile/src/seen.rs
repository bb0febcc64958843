//! What the profile intake has seen of identities lately, to route an event with one identity:
//! straight to the profile that identity created (the fast path), or to the identity owner.
//!
//! - An identity's first event goes to the owner, which creates its profile; sent straight, it
//!   would find none and the engine would forward it to the owner, a hop later.
//! - An identity first seen together with others will most likely be in a profile another
//!   identity named (a CRM id after a login on a cookie's profile), and when an event brings
//!   together two identities each seen alone, one of their profiles is about to merge away: the
//!   events of such identities go to the owner, which knows where they are.
//! - The rest, identities seen alone and not linked since, go straight.
//!
//! `ingest.raw` is keyed by primary identity, so an identity's events reach the same validate
//! instance while its partitions stay put. This is a hint for routing only: an identity it has
//! forgotten takes the owner's path, and a wrong guess is forwarded by the engine; neither loses
//! or misplaces an event. It is direct-mapped (one 64-bit entry per slot, the newest wins), so
//! its memory is fixed.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots of the intake's memory: 8 MiB, about a million identities.
pub const SLOTS: usize = 1 << 20;

/// An entry is the fingerprint without its two low bits, and the state in them.
const ALONE: u64 = 1;
const LINKED: u64 = 2;
const STATE: u64 = 3;

pub struct Seen {
    slots: Box<[AtomicU64]>,
}

impl Seen {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, fingerprint: u64) -> (&AtomicU64, u64) {
        let key = fingerprint & !STATE;
        let slot = &self.slots[(key >> 2) as usize % self.slots.len()];
        (slot, key)
    }

    fn state(&self, fingerprint: u64) -> Option<u64> {
        let (slot, key) = self.slot(fingerprint);
        let entry = slot.load(Ordering::Relaxed);
        (entry != 0 && entry & !STATE == key).then_some(entry & STATE)
    }

    fn set(&self, fingerprint: u64, state: u64) {
        let (slot, key) = self.slot(fingerprint);
        slot.store(key | state, Ordering::Relaxed);
    }

    /// An event whose one identity has this fingerprint: whether it goes straight to the
    /// identity's own profile. Notes the sighting.
    pub fn alone(&self, fingerprint: u64) -> bool {
        match self.state(fingerprint) {
            Some(ALONE) => true,
            Some(_) => false,
            None => {
                self.set(fingerprint, ALONE);
                false
            }
        }
    }

    /// An event that carries these identities together (it goes to the owner, which links
    /// them): the ones that will not name the profile they end in are noted as linked.
    pub fn together(&self, fingerprints: &[u64]) {
        let alone = fingerprints
            .iter()
            .filter(|f| self.state(**f) == Some(ALONE))
            .count();
        for &f in fingerprints {
            if alone >= 2 || self.state(f) != Some(ALONE) {
                self.set(f, LINKED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_goes_straight_from_its_second_event_until_another_takes_its_slot() {
        // With 8 slots, 0x10 and 0x30 share slot 4 ((fingerprint >> 2) mod 8); 0x14 is in 5.
        let seen = Seen::new(8);
        assert!(!seen.alone(0x10), "first sighting: to the owner");
        assert!(seen.alone(0x10), "seen alone: straight");
        assert!(!seen.alone(0x14), "another, in another slot");
        assert!(seen.alone(0x10), "still seen");
        assert!(!seen.alone(0x30), "another, in its slot");
        assert!(!seen.alone(0x10), "forgotten: the newest wins");
    }

    #[test]
    fn identities_linked_to_a_profile_another_named_go_to_the_owner() {
        let seen = Seen::new(64);
        let (cookie, crm) = (0x40, 0x80);
        assert!(!seen.alone(cookie));
        assert!(seen.alone(cookie));
        // A login: the CRM id joins the cookie's profile.
        seen.together(&[crm, cookie]);
        assert!(seen.alone(cookie), "the cookie still names its profile");
        assert!(!seen.alone(crm), "the CRM id is in the cookie's profile");
        assert!(!seen.alone(crm), "and stays with the owner's path");
    }

    #[test]
    fn two_identities_each_seen_alone_brought_together_both_go_to_the_owner() {
        let seen = Seen::new(64);
        let (a, b) = (0x40, 0x80);
        for f in [a, a, b, b] {
            seen.alone(f);
        }
        assert!(seen.alone(a) && seen.alone(b));
        seen.together(&[a, b]);
        assert!(!seen.alone(a), "one of the two profiles merges away");
        assert!(!seen.alone(b));
    }
}
