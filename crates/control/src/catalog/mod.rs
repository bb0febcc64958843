//! The catalog topic: one partition, compacted, keyed `<kind>/<id>`. Control writes it through
//! [`CatalogWriter`]; every stage follows it with a [`CatalogView`]. Writes that must not act on
//! a stale view are [`Conditional`] records, decided by every reader's fold in topic order.

mod conditional;
mod view;
mod writer;

pub use conditional::{Conditional, DatasetCreation, Decision, Refusal, SchemaChange};
pub use view::{CatalogError, CatalogState, CatalogView};
pub use writer::{CatalogWriter, WriteError};

use cdp_contract::admin::TopicSpec;
use cdp_contract::Topics;

/// The catalog must be totally ordered, so it has exactly one partition.
pub fn topic_spec(topics: &Topics) -> TopicSpec {
    TopicSpec {
        name: topics.catalog(),
        partitions: 1,
        compacted: true,
    }
}
