//! The hash maps on the evaluation path. Each update builds and probes them (events by type,
//! definitions by what they read, a sequence search's dead ends); std's SipHash was a visible
//! share of an update. foldhash is several times faster and still seeded per process, so
//! event types chosen by a sender cannot be made to collide on purpose.

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
