//! Segment memberships as the Profile API shows them (`segmentMembership.ups.<segmentId>`):
//! `segment.membership.json` folded into the latest status per profile and segment.

use std::collections::{BTreeMap, HashMap};

use cdp_contract::follower::Fold;
use cdp_contract::records::{MembershipChange, Status};

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
    segments: HashMap<String, SegmentTally>,
    malformed: u64,
}

/// Entries and exits of one segment per minute (by the change's decision time), and its
/// current member count: what the dashboard charts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SegmentTally {
    pub members: u64,
    /// Minute start (epoch ms) → (entries, exits).
    pub per_minute: BTreeMap<i64, (u64, u64)>,
}

/// Minutes of entries and exits kept per segment; older minutes are dropped as changes come.
const TALLY_MINUTES: i64 = 24 * 60;
const MINUTE: i64 = 60_000;

fn is_member(status: Status) -> bool {
    matches!(status, Status::Realized | Status::Existing)
}

impl MembershipState {
    pub fn apply_change(&mut self, c: MembershipChange) {
        let previous = self.by_profile.entry(c.profile_id).or_default().insert(
            c.segment_id.clone(),
            Membership {
                status: c.status,
                last_qualification_time: c.last_qualification_time,
                time: c.time,
            },
        );
        let was = previous.is_some_and(|p| is_member(p.status));
        let is = is_member(c.status);
        if was == is {
            return;
        }
        let tally = self.segments.entry(c.segment_id).or_default();
        let minute = c.time.div_euclid(MINUTE) * MINUTE;
        let counts = tally.per_minute.entry(minute).or_default();
        if is {
            tally.members += 1;
            counts.0 += 1;
        } else {
            tally.members = tally.members.saturating_sub(1);
            counts.1 += 1;
        }
        if let Some(&newest) = tally.per_minute.keys().next_back() {
            tally.per_minute = tally
                .per_minute
                .split_off(&(newest - TALLY_MINUTES * MINUTE));
        }
    }

    /// Segment id → its member count and recent entries and exits.
    pub fn segments(&self) -> &HashMap<String, SegmentTally> {
        &self.segments
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
    use cdp_contract::records::Trigger;

    use super::*;

    fn change_of(profile: &str, segment: &str, status: Status, time: i64) -> MembershipChange {
        MembershipChange {
            profile_id: profile.into(),
            org_id: "o".into(),
            sandbox: "prod".into(),
            identities: Vec::new(),
            segment_id: segment.into(),
            status,
            last_qualification_time: 1,
            time,
            trigger: Trigger::Event,
            event_id: None,
        }
    }

    #[test]
    fn the_latest_change_per_profile_and_segment_wins() {
        let change = |segment: &str, status, time| change_of("p", segment, status, time);
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

    #[test]
    fn segments_count_members_and_their_entries_and_exits_per_minute() {
        let change = |profile: &str, status, time| change_of(profile, "s", status, time);
        let mut s = MembershipState::default();
        s.apply_change(change("p1", Status::Realized, 60_000));
        s.apply_change(change("p2", Status::Realized, 61_000));
        // Staying in is not an entry.
        s.apply_change(change("p1", Status::Existing, 62_000));
        s.apply_change(change("p1", Status::Exited, 125_000));
        // An exit of a profile that never entered changes nothing.
        s.apply_change(change("p3", Status::Exited, 125_000));
        let t = &s.segments()["s"];
        assert_eq!(t.members, 1);
        assert_eq!(t.per_minute[&60_000], (2, 0));
        assert_eq!(t.per_minute[&120_000], (0, 1));
        assert_eq!(t.per_minute.len(), 2);
        // A day later the old minutes are gone.
        s.apply_change(change("p4", Status::Realized, 60_000 + 25 * 3_600_000));
        assert_eq!(s.segments()["s"].per_minute.len(), 1);
        assert_eq!(s.segments()["s"].members, 2);
    }
}
