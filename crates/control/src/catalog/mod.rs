//! The catalog topic: one partition, compacted, keyed `<kind>/<id>`. Control writes it through
//! [`CatalogWriter`]; every stage follows it with a [`CatalogView`].

mod view;
mod writer;

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
