//! The dashboard's sign-in: the admin token, typed once into a form, opens a session held by
//! control; the browser keeps only its random id in a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Secure` when the request came over TLS). A session ends after [`SESSION_TTL`], at sign-out
//! (on the server, so a copied cookie is dead too), and when the admin token changes. Failed
//! sign-ins are throttled: past [`FAILED_SIGN_INS`] in a minute the form answers 429.
//! API-style `Authorization: Bearer <admin token>` is accepted too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::html::{esc, Layout};
use crate::UiState;

pub const COOKIE: &str = "cdp_ui_session";

/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// Failed sign-ins accepted per minute (all clients together) before the form answers 429:
/// guessing the token through the form is that slow. Bearer requests are not throttled.
pub const FAILED_SIGN_INS: usize = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The open sessions of this control process.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Held>>);

#[derive(Default)]
struct Held {
    open: HashMap<String, Session>,
    /// When the recent failed sign-ins happened, oldest first.
    failures: VecDeque<Instant>,
}

struct Session {
    /// Which admin token opened it: a changed token ends it.
    token: [u8; 32],
    expires: Instant,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(format!("cdp-ui-session:{token}")).into()
}

impl Sessions {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for whoever knew `admin_token`; its id.
    fn open(&self, admin_token: &str, now: Instant) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut held = self.held();
        held.open.retain(|_, s| s.expires > now);
        held.open.insert(
            id.clone(),
            Session {
                token: digest(admin_token),
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    fn valid(&self, id: &str, admin_token: &str, now: Instant) -> bool {
        self.held()
            .open
            .get(id)
            .is_some_and(|s| s.expires > now && s.token == digest(admin_token))
    }

    fn close(&self, id: &str) {
        self.held().open.remove(id);
    }

    /// `Err(retry after)` while the failed sign-ins of the last minute are at the limit.
    fn may_try(&self, now: Instant) -> Result<(), Duration> {
        let mut held = self.held();
        while held
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            held.failures.pop_front();
        }
        match held.failures.front() {
            Some(oldest) if held.failures.len() >= FAILED_SIGN_INS => {
                Err(FAILURE_WINDOW.saturating_sub(now.duration_since(*oldest)))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, now: Instant) {
        self.held().failures.push_back(now);
    }
}

/// Compares digests, so the time taken does not reveal how much of a guess matched.
fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn signed_in(headers: &HeaderMap, ui: &UiState) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| same(t, &ui.admin_token)) {
        return true;
    }
    cookie_of(headers, COOKIE)
        .is_some_and(|id| ui.sessions.valid(id, &ui.admin_token, Instant::now()))
}

/// Whether the request reached us over TLS (directly, or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Pages need a session; a browser without one is sent to the sign-in form and back.
pub async fn require_session(State(ui): State<UiState>, req: Request, next: Next) -> Response {
    if signed_in(req.headers(), &ui) {
        return next.run(req).await;
    }
    if req.method() == Method::GET {
        let back = req
            .uri()
            .path_and_query()
            .map_or("/ui".to_string(), |p| p.to_string());
        return Redirect::to(&format!("/ui/login?next={}", encode_query(&back))).into_response();
    }
    (StatusCode::UNAUTHORIZED, "sign in at /ui/login first").into_response()
}

/// Percent-encodes everything but unreserved characters.
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a page of the dashboard is a place to go back to: no open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if (n == "/ui" || n.starts_with("/ui/")) && !n.starts_with("/ui//") => n,
        _ => "/ui",
    }
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Html<String> {
    form_page(safe_next(q.next.as_deref()), None)
}

fn form_page(next: &str, error: Option<&str>) -> Html<String> {
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let body = format!(
        r#"<section class="login">
<h1>Sign in</h1>
<p>The dashboard is for operators: sign in with control's admin token (<code>control.admin_token</code>).</p>
{error}
<form method="post" action="/ui/login">
<input type="hidden" name="next" value="{next}">
<label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form>
</section>"#,
        next = esc(next)
    );
    Layout::bare("Sign in").render(&body)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(ui): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_string();
    let now = Instant::now();
    if let Err(wait) = ui.sessions.may_try(now) {
        tracing::warn!(
            "dashboard sign-in throttled: {FAILED_SIGN_INS} failed attempts in the last minute"
        );
        let mut resp = form_page(
            &next,
            Some("Too many failed sign-ins: wait a minute and try again."),
        )
        .into_response();
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return resp;
    }
    if !same(form.token.trim(), &ui.admin_token) {
        ui.sessions.failed(now);
        tracing::info!("dashboard sign-in refused: wrong admin token");
        let mut resp = form_page(&next, Some("That is not the admin token.")).into_response();
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    let id = ui.sessions.open(&ui.admin_token, now);
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Ends the session on the server (a copy of the cookie is dead too) and in the browser.
pub async fn logout(State(ui): State<UiState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_of(&headers, COOKIE) {
        ui.sessions.close(id);
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cdp_ui_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_they_expire_are_closed_or_the_token_changes() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let id = sessions.open("admin", t0);
        assert_eq!(id.len(), 64);
        assert!(sessions.valid(&id, "admin", t0));
        assert!(!sessions.valid("guess", "admin", t0));
        assert!(
            !sessions.valid(&id, "rotated", t0),
            "a changed token ends it"
        );
        assert!(sessions.valid(&id, "admin", t0 + SESSION_TTL - Duration::from_secs(1)));
        assert!(!sessions.valid(&id, "admin", t0 + SESSION_TTL), "expired");
        let other = sessions.open("admin", t0);
        assert_ne!(id, other);
        sessions.close(&other);
        assert!(!sessions.valid(&other, "admin", t0));
        assert!(sessions.valid(&id, "admin", t0), "only the closed one ends");
    }

    #[test]
    fn failed_sign_ins_are_throttled_for_a_minute() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        for i in 0..FAILED_SIGN_INS {
            assert_eq!(sessions.may_try(t0), Ok(()), "attempt {i}");
            sessions.failed(t0 + Duration::from_secs(i as u64));
        }
        let wait = sessions.may_try(t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(
            sessions.may_try(t0 + FAILURE_WINDOW),
            Ok(()),
            "the oldest left"
        );
    }

    #[test]
    fn tls_is_recognised_from_the_proxy_header() {
        let mut h = HeaderMap::new();
        assert!(!over_tls(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
    }

    #[test]
    fn only_dashboard_pages_are_redirect_targets() {
        assert_eq!(safe_next(Some("/ui/datasets/x")), "/ui/datasets/x");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui");
        assert_eq!(safe_next(Some("/uix")), "/ui");
        assert_eq!(safe_next(None), "/ui");
        assert_eq!(encode_query("/ui/x?a=1&b"), "/ui/x%3Fa%3D1%26b");
    }
}
