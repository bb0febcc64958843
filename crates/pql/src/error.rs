use std::fmt;

use crate::ast::Span;

/// One problem found in a query, tied to the place in the source that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span,
        }
    }

    /// The message, the offending source line and a caret under the culprit, so an
    /// author of a segment sees where the problem is without counting characters.
    pub fn render(&self, source: &str) -> String {
        let line_text = source
            .lines()
            .nth(self.span.line.saturating_sub(1) as usize)
            .unwrap_or("");
        let col = self.span.col.max(1) as usize;
        let width = self.span.end.saturating_sub(self.span.start).max(1);
        let room = line_text.chars().count().saturating_sub(col - 1).max(1);
        format!(
            "error at line {}, column {}: {}\n{}\n{}{}",
            self.span.line,
            self.span.col,
            self.message,
            line_text,
            " ".repeat(col - 1),
            "^".repeat(width.min(room))
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.span.line, self.span.col, self.message
        )
    }
}

/// Why a query could not be turned into a segment definition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PqlError {
    #[error("parse error at {0}")]
    Parse(Diagnostic),
    #[error("{} type error(s), first at {}", .0.len(), .0.first().map(|d| d.to_string()).unwrap_or_default())]
    Check(Vec<Diagnostic>),
}

impl PqlError {
    pub fn diagnostics(&self) -> Vec<&Diagnostic> {
        match self {
            PqlError::Parse(d) => vec![d],
            PqlError::Check(ds) => ds.iter().collect(),
        }
    }

    /// Every diagnostic rendered with its caret, one after the other.
    pub fn render(&self, source: &str) -> String {
        self.diagnostics()
            .iter()
            .map(|d| d.render(source))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Why a schema document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is not an object with `properties`")]
    NotAnObjectSchema,
    #[error("unknown field type `{ty}` for `{path}`")]
    UnknownType { path: String, ty: String },
}
