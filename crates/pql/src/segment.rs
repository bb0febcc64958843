//! The one call a segment stage needs when a definition arrives or changes.

use std::collections::HashMap;

use crate::ast::Query;
use crate::checker::{check, Schemas};
use crate::classify::{classify, Classification, SegmentInfo};
use crate::error::PqlError;
use crate::parser::parse;
use crate::plan::Plan;

/// A segment definition parsed, checked, classified and compiled.
#[derive(Debug, Clone)]
pub struct CompiledSegment {
    pub query: Query,
    pub classification: Classification,
    pub plan: Plan,
}

/// parse → check → classify → compile. On error, `PqlError::render(source)`
/// gives the messages with line, column and caret.
pub fn compile(
    source: &str,
    schemas: &Schemas<'_>,
    segments: &HashMap<String, SegmentInfo>,
) -> Result<CompiledSegment, PqlError> {
    let query = parse(source)?;
    check(&query, schemas)?;
    let classification = classify(&query, segments);
    let plan = Plan::compile(&query)?;
    Ok(CompiledSegment {
        query,
        classification,
        plan,
    })
}
