//! Segment memberships as the Profile API shows them (`segmentMembership.ups.<segmentId>`):
//! `segment.membership.json` folded into the latest status per profile and segment.

use std::collections::{BTreeMap, HashMap};

use cdp_contract::follower::Fold;
use cdp_segment::membership::{MembershipChange, Status};

/// A profile's membership in one segment, as of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub status: Status,
    pub last_qualification_time: i64,
    pub time: i64,
}

#[derive(Debug, Default)]
pub struct MembershipState {
    by_profile: HashMap<String, BTreeMap<String, Membership>>,
    malformed: u64,
}

impl MembershipState {
    pub fn apply_change(&mut self, c: MembershipChange) {
        self.by_profile.entry(c.profile_id).or_default().insert(
            c.segment_id,
            Membership {
                status: c.status,
                last_qualification_time: c.last_qualification_time,
                time: c.time,
            },
        );
    }

    /// Segment id → membership of a profile.
    pub fn of(&self, profile_id: &str) -> Option<&BTreeMap<String, Membership>> {
        self.by_profile.get(profile_id)
    }

    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Fold for MembershipState {
    fn apply(&mut self, partition: i32, offset: i64, _key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            return;
        };
        match serde_json::from_slice::<MembershipChange>(value) {
            Ok(c) => self.apply_change(c),
            Err(error) => {
                self.malformed += 1;
                tracing::warn!(topic = "segment.membership.json", partition, offset, %error, "skipping a membership record that cannot be read");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cdp_segment::membership::Trigger;

    use super::*;

    #[test]
    fn the_latest_change_per_profile_and_segment_wins() {
        let change = |segment: &str, status, time| MembershipChange {
            profile_id: "p".into(),
            org_id: "o".into(),
            sandbox: "prod".into(),
            identities: Vec::new(),
            segment_id: segment.into(),
            status,
            last_qualification_time: 1,
            time,
            trigger: Trigger::Event,
            event_id: None,
        };
        let mut s = MembershipState::default();
        s.apply_change(change("a", Status::Realized, 1));
        s.apply_change(change("b", Status::Realized, 2));
        s.apply_change(change("a", Status::Exited, 3));
        let m = s.of("p").unwrap();
        assert_eq!(m["a"].status, Status::Exited);
        assert_eq!(m["b"].status, Status::Realized);
        s.apply(0, 9, "p", Some(b"not json"));
        assert_eq!(s.malformed(), 1);
    }
}
