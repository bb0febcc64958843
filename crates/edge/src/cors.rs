//! CORS for the ingestion endpoints, with the allowed origins of each stream (its
//! `allowedOrigins`), so the web SDK can post from a shop's pages and read the answers.
//!
//! tower-http's `CorsLayer` can decide per request, but it answers a refused preflight 200 and
//! leaves the request to the browser; here a refused origin is answered 403 and never reaches
//! a handler. That matters beyond preflights: a simple request (`sendBeacon` with a
//! `text/plain` body) is never preflighted, so only the server can keep an origin that a stream
//! does not list from writing to it.
//!
//! Requests without `Origin` (servers, curl) pass through unchanged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::EdgeError;

/// Request headers a page may send: what the SDK sends, plus the org and sandbox headers of the
/// collection API and compressed bodies.
const ALLOW_HEADERS: &str =
    "content-type, authorization, x-gw-ims-org-id, x-sandbox-name, content-encoding";
/// How long a browser may reuse a preflight answer, in seconds.
const MAX_AGE: &str = "600";
/// Response headers a page may read beyond the safelisted ones: the SDK waits as long as
/// `Retry-After` says on 429 and 503.
const EXPOSE_HEADERS: &str = "retry-after";

/// What a stream says about one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    UnknownStream,
    Allowed,
    Refused,
}

/// `(stream id, origin) → verdict`.
type Check = dyn Fn(&str, &str) -> Verdict + Send + Sync;

/// Answers "may pages of this origin use this stream?"; the edge reads its catalog view, the
/// tests a fixed list.
#[derive(Clone)]
pub struct Origins(Arc<Check>);

impl Origins {
    pub fn new(check: impl Fn(&str, &str) -> Verdict + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    /// From the streams in the edge's catalog view (changes apply as the view follows them).
    pub fn from_catalog(catalog: cdp_catalog::CatalogView) -> Self {
        Self::new(
            move |stream_id, origin| match catalog.read().streams.get(stream_id) {
                None => Verdict::UnknownStream,
                Some(s) if s.allows_origin(origin) => Verdict::Allowed,
                Some(_) => Verdict::Refused,
            },
        )
    }

    fn check(&self, stream_id: &str, origin: &str) -> Verdict {
        (self.0)(stream_id, origin)
    }
}

/// The stream id of an ingestion path: its last segment in each of `/collection/{id}`,
/// `/collection/batch/{id}` and `/stream/v0/data/{id}`.
fn stream_id(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The middleware, for `route_layer` on the ingestion routes only (so it wraps their 405 for
/// OPTIONS too, and answers preflights before any method routing).
pub async fn middleware(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let id = stream_id(req.uri().path()).to_string();
    // A header that is not text cannot name a listed origin.
    let verdict = match origin.to_str() {
        Ok(text) => origins.check(&id, text),
        Err(_) => Verdict::Refused,
    };
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = match (verdict, preflight) {
        (Verdict::Allowed, true) => preflight_answer(&origin),
        (Verdict::Allowed, false) => {
            let mut resp = next.run(req).await;
            allow(resp.headers_mut(), &origin);
            resp
        }
        // The POST would be answered 404 by its handler; a preflight gets the same news.
        (Verdict::UnknownStream, true) => EdgeError::UnknownStream(id).into_response(),
        (Verdict::UnknownStream, false) => next.run(req).await,
        (Verdict::Refused, _) => EdgeError::Forbidden(format!(
            "origin {} may not post to stream {id}: add it to the stream's allowedOrigins",
            String::from_utf8_lossy(origin.as_bytes())
        ))
        .into_response(),
    };
    // Whatever the answer, it depends on Origin: caches must not reuse it for another one.
    resp.headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    resp
}

fn preflight_answer(origin: &HeaderValue) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    resp
}

/// On every answer to an allowed origin, errors included: a page that cannot read a 429 or its
/// `Retry-After` cannot back off.
fn allow(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::extract::Query;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    const SHOP: &str = "https://shop.example";

    #[derive(serde::Deserialize)]
    struct Answer {
        status: Option<u16>,
    }

    /// The edge's layout with handlers that answer the status they are asked for (with a
    /// `Retry-After`, as the edge's 429 and 503 have), counting the requests that reach them.
    fn app(reached: Arc<AtomicUsize>) -> Router {
        let handler = move |Query(q): Query<Answer>| {
            let reached = reached.clone();
            async move {
                reached.fetch_add(1, Ordering::SeqCst);
                let status = StatusCode::from_u16(q.status.unwrap_or(207))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, [(header::RETRY_AFTER, "2")], "{}")
            }
        };
        let origins = Origins::new(|stream, origin| match stream {
            "shop" if origin == SHOP => Verdict::Allowed,
            "shop" => Verdict::Refused,
            "any" => Verdict::Allowed,
            _ => Verdict::UnknownStream,
        });
        Router::new()
            .route("/collection/{id}", post(handler.clone()))
            .route("/collection/batch/{id}", post(handler.clone()))
            .route("/stream/v0/data/{id}", post(handler))
            .route_layer(axum::middleware::from_fn_with_state(origins, middleware))
            .route("/healthz", get(|| async { "ok" }))
    }

    async fn call(
        app: &Router,
        method: Method,
        uri: &str,
        origin: Option<&str>,
    ) -> (StatusCode, HeaderMap) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(o) = origin {
            req = req
                .header(header::ORIGIN, o)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (resp.status(), resp.headers().clone())
    }

    fn header(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn preflight_of_an_allowed_origin_is_answered_without_the_handler() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(reached.clone());
        for path in [
            "/collection/shop",
            "/collection/batch/shop",
            "/stream/v0/data/shop",
        ] {
            let (status, h) = call(&app, Method::OPTIONS, path, Some(SHOP)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{path}");
            assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some(SHOP));
            assert_eq!(
                header(&h, header::ACCESS_CONTROL_ALLOW_METHODS),
                Some("POST")
            );
            let allowed = header(&h, header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap();
            for name in [
                "content-type",
                "authorization",
                "x-gw-ims-org-id",
                "x-sandbox-name",
                "content-encoding",
            ] {
                assert!(allowed.contains(name), "{name} in {allowed}");
            }
            assert_eq!(header(&h, header::ACCESS_CONTROL_MAX_AGE), Some("600"));
            assert_eq!(header(&h, header::VARY), Some("origin"));
        }
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn every_answer_to_an_allowed_origin_carries_the_cors_headers() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(reached.clone());
        for status in [207u16, 202, 400, 401, 403, 404, 413, 415, 429, 500, 503] {
            let uri = format!("/collection/batch/shop?status={status}");
            let (got, h) = call(&app, Method::POST, &uri, Some(SHOP)).await;
            assert_eq!(got.as_u16(), status);
            assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some(SHOP));
            assert_eq!(
                header(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS),
                Some("retry-after")
            );
            assert_eq!(header(&h, header::VARY), Some("origin"));
            assert_eq!(header(&h, header::RETRY_AFTER), Some("2"), "kept");
        }
        assert_eq!(reached.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn a_wildcard_stream_echoes_the_origin() {
        let app = app(Arc::new(AtomicUsize::new(0)));
        let other = "http://127.0.0.1:5173";
        let (status, h) = call(&app, Method::OPTIONS, "/collection/any", Some(other)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some(other));
        let (status, h) = call(&app, Method::POST, "/stream/v0/data/any", Some(other)).await;
        assert_eq!(status.as_u16(), 207);
        assert_eq!(header(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some(other));
    }

    #[tokio::test]
    async fn an_origin_the_stream_does_not_list_is_refused_without_cors_headers() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(reached.clone());
        let evil = "https://evil.example";
        for method in [Method::OPTIONS, Method::POST] {
            let (status, h) =
                call(&app, method.clone(), "/collection/batch/shop", Some(evil)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
            assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
            assert!(h.get(header::ACCESS_CONTROL_ALLOW_METHODS).is_none());
            assert!(h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
        }
        // A simple request (a beacon) must not be written by a stream that does not list it.
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn unknown_streams_and_requests_without_origin_are_left_alone() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(reached.clone());
        let (status, h) = call(&app, Method::OPTIONS, "/collection/batch/nope", Some(SHOP)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        // The handler answers an unknown stream itself (404 in the edge).
        let (status, h) = call(
            &app,
            Method::POST,
            "/collection/nope?status=404",
            Some(SHOP),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(reached.load(Ordering::SeqCst), 1);

        // No Origin: no CORS headers, no Vary, and OPTIONS is still not a method of the route.
        let (status, h) = call(
            &app,
            Method::POST,
            "/collection/batch/shop?status=429",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(h.get(header::VARY).is_none());
        let (status, _) = call(&app, Method::OPTIONS, "/collection/batch/shop", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reached.load(Ordering::SeqCst), 2);

        // Routes outside the ingestion endpoints are not touched.
        let (status, h) = call(&app, Method::GET, "/healthz", Some("https://evil.example")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(h.get(header::VARY).is_none());
    }

    #[test]
    fn the_stream_id_is_the_last_segment() {
        assert_eq!(stream_id("/collection/abc"), "abc");
        assert_eq!(stream_id("/collection/batch/abc"), "abc");
        assert_eq!(stream_id("/stream/v0/data/abc/"), "abc");
    }
}
