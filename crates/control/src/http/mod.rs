//! The management API: streams, API keys, tokens, identity namespaces, merge policies and
//! schedules (batch segmentation).
//! Everything except token issuance needs a credential: API keys are the operator's (admin
//! token) to create and rotate; the rest an org's credential may read (`read`) and change
//! (`manage`) within its org and sandboxes (see `cdp_http::org_scoped`).

mod api_keys;
mod merge_policies;
mod namespaces;
mod schedules;
mod streams;
mod tokens;

pub use api_keys::ApiKeyView;
pub use merge_policies::MergePolicyView;
pub use namespaces::NamespaceView;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use cdp_catalog::principal::Authenticator;
use cdp_catalog::tokens::Tokens;
use cdp_catalog::{CatalogView, CatalogWriter};
use cdp_http::Problem;

/// What every management handler needs.
#[derive(Clone)]
pub struct ControlState {
    pub view: CatalogView,
    pub writer: CatalogWriter,
    pub tokens: Tokens,
    pub auth: Authenticator,
    pub max_token_days: u32,
}

pub fn router(state: ControlState) -> Router {
    let operator = Router::new()
        .route("/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/api-keys/{id}", axum::routing::delete(api_keys::delete))
        .route("/api-keys/{id}/rotate", post(api_keys::rotate))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            cdp_http::operator_only,
        ));
    let org = Router::new()
        .route("/streams", post(streams::create).get(streams::list))
        .route("/streams/{id}", get(streams::get).delete(streams::delete))
        .route(
            "/identity/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route("/identity/namespaces/{code}", get(namespaces::get))
        // Beside the registry's Confluent `/config/{subject}`: the static segment wins.
        .route(
            "/config/mergePolicies",
            get(merge_policies::list).post(merge_policies::create),
        )
        .route(
            "/config/mergePolicies/{id}",
            get(merge_policies::get)
                .put(merge_policies::replace)
                .patch(merge_policies::patch)
                .delete(merge_policies::delete),
        )
        // Likewise: `/config/schedules` is not a registry subject.
        .route(
            "/config/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/config/schedules/{id}",
            get(schedules::get)
                .post(schedules::update)
                .patch(schedules::update)
                .delete(schedules::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            cdp_http::org_scoped,
        ));
    Router::new()
        .merge(operator)
        .merge(org)
        .route("/tokens", post(tokens::issue))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

pub use cdp_http::{DEFAULT_SANDBOX, ORG_HEADER, SANDBOX_HEADER};

/// The org and sandbox a request is about, from AEP's headers (`x-gw-ims-org-id`, required;
/// `x-sandbox-name`, default `prod`). Rejected with a 400 problem naming the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub org: String,
    pub sandbox: String,
}

impl Tenant {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Problem> {
        let org = header_value(headers, ORG_HEADER)?.ok_or_else(|| {
            Problem::bad_request(format!(
                "the {ORG_HEADER} header is required: the IMS org the request is about"
            ))
        })?;
        let sandbox =
            header_value(headers, SANDBOX_HEADER)?.unwrap_or_else(|| DEFAULT_SANDBOX.to_string());
        Ok(Self { org, sandbox })
    }
}

/// A header's value: absent is `None`; present, it must be non-empty and hold no `/` (catalog
/// keys are `/`-separated), whitespace or control characters.
fn header_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, Problem> {
    let Some(raw) = headers.get(name) else {
        return Ok(None);
    };
    let value = raw
        .to_str()
        .map_err(|_| Problem::bad_request(format!("the {name} header must be visible ASCII")))?;
    if value.is_empty()
        || value
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(Problem::bad_request(format!(
            "the {name} header must be non-empty, without '/' or whitespace (got {value:?})"
        )));
    }
    Ok(Some(value.to_string()))
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Tenant::from_headers(&parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tenant_needs_the_org_header_and_defaults_the_sandbox() {
        let missing = Tenant::from_headers(&headers(&[])).unwrap_err();
        assert_eq!(missing.status, 400);
        assert!(missing.detail.contains(ORG_HEADER), "{}", missing.detail);
        assert_eq!(
            Tenant::from_headers(&headers(&[(ORG_HEADER, "ACME@AdobeOrg")])).unwrap(),
            Tenant {
                org: "ACME@AdobeOrg".into(),
                sandbox: "prod".into()
            }
        );
        let dev =
            Tenant::from_headers(&headers(&[(ORG_HEADER, "acme"), (SANDBOX_HEADER, "dev-1")]))
                .unwrap();
        assert_eq!(dev.sandbox, "dev-1");
        for bad in ["", "a/b", "a b"] {
            let e = Tenant::from_headers(&headers(&[(ORG_HEADER, "acme"), (SANDBOX_HEADER, bad)]))
                .unwrap_err();
            assert!(e.detail.contains(SANDBOX_HEADER), "{}", e.detail);
        }
    }
}
