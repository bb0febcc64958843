//! Interim schemaRef resolution until the registry crate's lands (then this file goes).
use cdp_control::catalog::CatalogState;
use cdp_control::XdmSchema;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown schema {0}")]
    Unknown(String),
    #[error("schema {0} has no version {1}")]
    NoVersion(String, u32),
}

pub fn resolve<'a>(
    catalog: &'a CatalogState,
    id: &str,
    content_type: Option<&str>,
) -> Result<&'a XdmSchema, ResolveError> {
    let version = content_type.and_then(|ct| {
        ct.split(';')
            .skip(1)
            .map(str::trim)
            .find_map(|p| p.strip_prefix("version=").unwrap_or(p).parse::<u32>().ok())
    });
    match version {
        Some(v) => catalog
            .schema(id, v)
            .ok_or_else(|| ResolveError::NoVersion(id.to_string(), v)),
        None => catalog
            .latest_schema(id)
            .ok_or_else(|| ResolveError::Unknown(id.to_string())),
    }
}
