//! Per segment and partition, how many profiles are members and how many entered and left in
//! each of the last [`MINUTES`] minutes: what the dashboard charts, counted where memberships
//! change (from the engine's own transitions, so a profile that stays in is not an entry and
//! an exit needs an entry before it) and read where it lives ([`crate::query`]), so control keeps
//! nothing per profile. State key per partition: `t` + segment id.

use std::collections::BTreeMap;

use cdp_contract::records::lookup::SegmentTally;
use cdp_contract::records::{MembershipChange, Status};
use cdp_stage::{Context, ProcessError};

use crate::stage::{fatal, At};

/// Minutes of entries and exits kept per segment.
pub const MINUTES: i64 = 60;
const MINUTE: i64 = 60_000;

pub fn key(segment: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + segment.len());
    k.push(b't');
    k.extend_from_slice(segment.as_bytes());
    k
}

/// Every tally of a partition: `t`.
pub const TALLIES: &[u8] = b"t";

/// Counts one membership change (an entry or an exit decided by the engine) at its time.
pub fn count(tally: &mut SegmentTally, entered: bool, time_ms: i64) {
    let minute = time_ms.div_euclid(MINUTE) * MINUTE;
    let bucket = tally.per_minute.entry(minute).or_default();
    if entered {
        tally.members += 1;
        bucket.0 += 1;
    } else {
        tally.members = tally.members.saturating_sub(1);
        bucket.1 += 1;
    }
    if let Some(&newest) = tally.per_minute.keys().next_back() {
        tally.per_minute = tally
            .per_minute
            .split_off(&(newest - (MINUTES - 1) * MINUTE));
    }
}

pub fn decode(bytes: &[u8]) -> Result<SegmentTally, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// Counts the change in its partition's tally (a batch's changes of one segment coalesce into
/// one state write).
pub(crate) fn record(
    ctx: &mut Context<'_>,
    at: At,
    change: &MembershipChange,
) -> Result<(), ProcessError> {
    let entered = match change.status {
        Status::Realized => true,
        Status::Exited => false,
        Status::Existing => return Ok(()),
    };
    let key = key(&change.segment_id);
    let mut tally = match ctx.get(at.partition, &key)? {
        Some(v) => decode(&v).map_err(|e| fatal("a segment tally cannot be read", e))?,
        None => SegmentTally {
            members: 0,
            per_minute: BTreeMap::new(),
        },
    };
    count(&mut tally, entered, change.time);
    let value =
        rmp_serde::to_vec(&tally).map_err(|e| fatal("a segment tally cannot be written", e))?;
    ctx.put(at.cause, &key, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_entries_and_exits_per_minute_over_the_last_hour() {
        let mut t = SegmentTally::default();
        count(&mut t, true, 60_000);
        count(&mut t, true, 61_000);
        count(&mut t, false, 125_000);
        assert_eq!(t.members, 1);
        assert_eq!(t.per_minute[&60_000], (2, 0));
        assert_eq!(t.per_minute[&120_000], (0, 1));
        // An hour later the old minutes are gone.
        count(&mut t, true, 60_000 + 61 * MINUTE);
        assert_eq!(t.per_minute.len(), 1);
        assert_eq!(t.members, 2);
        let mut sum = SegmentTally::default();
        sum.add(&t);
        sum.add(&t);
        assert_eq!(sum.members, 4);
        assert_eq!(sum.per_minute[&(60_000 + 61 * MINUTE)], (2, 0));
        let back = decode(&rmp_serde::to_vec(&t).expect("encode")).expect("decode");
        assert_eq!(back, t);
    }
}
