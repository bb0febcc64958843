//! schemaRef resolution for messages: `{id, contentType}` → one schema version of the catalog.

use cdp_catalog::CatalogState;
use cdp_catalog::XdmSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown schema {0}")]
    Unknown(String),
    #[error("schema {0} has no version {1}")]
    NoVersion(String, u32),
    #[error("cannot read a schema version from content type {0:?}")]
    BadContentType(String),
}

/// The version a content type asks for: `application/vnd.adobe.xed-full+json;version=N`, the
/// bare `…;N` form of seed 002, or none (→ latest).
pub fn requested_version(content_type: Option<&str>) -> Result<Option<u32>, ResolveError> {
    let Some(ct) = content_type.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    for param in ct.split(';').skip(1).map(str::trim) {
        if param.is_empty() {
            continue;
        }
        let value = match param.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("version") => v.trim(),
            // Other parameters (charset…) say nothing about the version.
            Some(_) => continue,
            None => param,
        };
        return value
            .trim_matches('"')
            .parse::<u32>()
            .map(Some)
            .map_err(|_| ResolveError::BadContentType(ct.to_string()));
    }
    Ok(None)
}

pub fn resolve<'a>(
    catalog: &'a CatalogState,
    schema_ref_id: &str,
    content_type: Option<&str>,
) -> Result<&'a XdmSchema, ResolveError> {
    match requested_version(content_type)? {
        Some(v) => catalog.schema(schema_ref_id, v).ok_or_else(|| {
            if catalog.schemas.contains_key(schema_ref_id) {
                ResolveError::NoVersion(schema_ref_id.to_string(), v)
            } else {
                ResolveError::Unknown(schema_ref_id.to_string())
            }
        }),
        None => catalog
            .latest_schema(schema_ref_id)
            .ok_or_else(|| ResolveError::Unknown(schema_ref_id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> CatalogState {
        let mut c = CatalogState::default();
        for version in [1, 2] {
            let s = XdmSchema {
                org_id: None,
                id: "https://ns.adobe.com/acme/schemas/abc".into(),
                version,
                title: "t".into(),
                tenant: "acme".into(),
                class: "_xdm.context.experienceevent".into(),
                field_groups: vec![],
                profile_enabled: false,
                definition: serde_json::json!({}),
                created_at: 0,
            };
            c.schemas
                .entry(s.id.clone())
                .or_default()
                .insert(version, s);
        }
        c
    }

    #[test]
    fn resolves_seed_002_forms() {
        let c = catalog();
        let id = "https://ns.adobe.com/acme/schemas/abc";
        let v = |ct: Option<&str>| resolve(&c, id, ct).map(|s| s.version);
        assert_eq!(
            v(Some("application/vnd.adobe.xed-full+json;version=1")),
            Ok(1)
        );
        assert_eq!(v(Some("application/vnd.adobe.xed-full+json;1")), Ok(1));
        assert_eq!(v(Some("application/vnd.adobe.xed-full+json")), Ok(2));
        assert_eq!(v(None), Ok(2));
        assert_eq!(
            v(Some("application/vnd.adobe.xed-full+json;version=3")),
            Err(ResolveError::NoVersion(id.into(), 3))
        );
        assert!(matches!(
            resolve(&c, "https://ns.adobe.com/acme/schemas/nope", None),
            Err(ResolveError::Unknown(_))
        ));
    }

    #[test]
    fn content_type_forms() {
        let v = |s| requested_version(Some(s)).unwrap();
        assert_eq!(v("application/vnd.adobe.xed-full+json;version=3"), Some(3));
        assert_eq!(v("application/vnd.adobe.xed-full+json; version=2"), Some(2));
        assert_eq!(v("application/vnd.adobe.xed-full+json;1"), Some(1));
        assert_eq!(v("application/vnd.adobe.xed-full+json"), None);
        assert_eq!(requested_version(None).unwrap(), None);
        assert!(
            requested_version(Some("application/vnd.adobe.xed-full+json;{SCHEMA_VERSION}"))
                .is_err()
        );
    }
}
