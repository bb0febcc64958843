//! `cdp-pql` owns the segment language: a PQL (Profile Query Language) subset.
//! It parses segment definitions, checks them against XDM schemas, classifies
//! them as streaming or batch by the streaming-segmentation rules, and evaluates
//! compiled plans against a profile, its recent events, its other segment
//! memberships and the current time (with the time the answer would change by
//! itself, for real-time exit). It knows nothing about Kafka.

pub mod ast;
mod checker;
mod classify;
mod error;
mod eval;
mod explain;
mod fast;
pub mod incremental;
mod lexer;
mod parser;
mod plan;
mod printer;
mod schema;
mod segment;

pub use checker::{check, Schemas};
pub use classify::{classify, Classification, Evaluation, QueryType, SegmentInfo};
pub use error::{Diagnostic, PqlError, SchemaError};
pub use eval::{Answer, Context};
pub use explain::Explanation;
pub use parser::parse;
pub use plan::{EventReads, Inputs, Plan};
pub use printer::print;
pub use schema::{FieldType, Schema};
pub use segment::{compile, CompiledSegment};
