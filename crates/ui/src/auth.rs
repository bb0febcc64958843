//! The dashboard's sign-in: the admin token (the operator: every org), or an org's API key with
//! role `read` (that org only), typed once into a form, opens a session held by control; the
//! browser keeps only its random id in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when
//! the request came over TLS). A session ends after [`SESSION_TTL`], at sign-out (on the server,
//! so a copied cookie is dead too), and when the admin token changes or the key is rotated or
//! deleted. Failed sign-ins are throttled: past [`FAILED_SIGN_INS`] in a minute the form answers
//! 429. API-style `Authorization: Bearer <admin token or an org's access token>` is accepted too.
//! The pages read the caller's [`Principal`] and show only what it may see.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cdp_catalog::principal::{OrgCredential, Principal};
use cdp_catalog::Role;
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
    owner: Owner,
    expires: Instant,
}

/// Who opened a session, as far as checking it later needs.
#[derive(Clone, PartialEq, Eq)]
enum Owner {
    /// The operator, with a digest of the admin token it knew: a changed token ends it.
    Operator([u8; 32]),
    /// An org's API key at a generation: rotating or deleting the key ends it.
    Key { id: String, generation: u32 },
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(format!("cdp-ui-session:{token}")).into()
}

impl Sessions {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `owner`; its id.
    fn open(&self, owner: Owner, now: Instant) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut held = self.held();
        held.open.retain(|_, s| s.expires > now);
        held.open.insert(
            id.clone(),
            Session {
                owner,
                expires: now + SESSION_TTL,
            },
        );
        id
    }

    /// Who session `id` is for, if it is still open.
    fn owner(&self, id: &str, now: Instant) -> Option<Owner> {
        self.held()
            .open
            .get(id)
            .filter(|s| s.expires > now)
            .map(|s| s.owner.clone())
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

/// Who is signed in: by bearer (the admin token, an org's access token) or by session. `Err`
/// with a status for a credential that is refused.
fn signed_in(headers: &HeaderMap, ui: &UiState) -> Result<Option<Principal>, StatusCode> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let who = ui
            .auth
            .principal(Some(authorization.to_str().unwrap_or("")))
            .map_err(|_| StatusCode::FORBIDDEN)?;
        return readable(who).map(Some);
    }
    let Some(id) = cookie_of(headers, COOKIE) else {
        return Ok(None);
    };
    let who = match ui.sessions.owner(id, Instant::now()) {
        Some(Owner::Operator(token)) if token == digest(&ui.admin_token) => Principal::Operator,
        Some(Owner::Key { id, generation }) => match ui.auth.key_at(&id, generation) {
            Some(credential) => Principal::Org(credential),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    readable(who).map(Some)
}

/// An org's credential needs role `read` for the dashboard.
fn readable(who: Principal) -> Result<Principal, StatusCode> {
    match &who {
        Principal::Org(c) if !c.may(Role::Read) => Err(StatusCode::FORBIDDEN),
        _ => Ok(who),
    }
}

/// Whether the request reached us over TLS (directly, or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Pages need a session; a browser without one is sent to the sign-in form and back.
pub async fn require_session(State(ui): State<UiState>, mut req: Request, next: Next) -> Response {
    match signed_in(req.headers(), &ui) {
        Ok(Some(who)) => {
            req.extensions_mut().insert(who);
            return next.run(req).await;
        }
        Ok(None) => {}
        Err(status) => {
            return (
                status,
                "this credential may not open the dashboard (it needs role read)",
            )
                .into_response()
        }
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
<p>Sign in with control's admin token (<code>control.admin_token</code>: every org), or with an org's API key (<code>cdpk.…</code>, role <code>read</code>: that org only).</p>
{error}
<form method="post" action="/ui/login">
<input type="hidden" name="next" value="{next}">
<label>Admin token or API key <input type="password" name="token" autocomplete="current-password" required autofocus></label>
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
    let presented = form.token.trim();
    let owner = if same(presented, &ui.admin_token) {
        Owner::Operator(digest(&ui.admin_token))
    } else {
        match ui.auth.api_key(presented) {
            Ok((credential, generation)) if credential.may(Role::Read) => {
                tracing::info!(key = %credential.key_id, org = %credential.org, "dashboard sign-in with an org's key");
                key_owner(&credential, generation)
            }
            Ok((credential, _)) => {
                tracing::info!(key = %credential.key_id, "dashboard sign-in refused: the key lacks role read");
                let mut resp = form_page(
                    &next,
                    Some("That API key may not read its org's data (it needs role read)."),
                )
                .into_response();
                *resp.status_mut() = StatusCode::FORBIDDEN;
                return resp;
            }
            Err(_) => {
                ui.sessions.failed(now);
                tracing::info!("dashboard sign-in refused: neither the admin token nor an API key");
                let mut resp =
                    form_page(&next, Some("That is not the admin token, nor an API key."))
                        .into_response();
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                return resp;
            }
        }
    };
    let id = ui.sessions.open(owner, now);
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

fn key_owner(credential: &OrgCredential, generation: u32) -> Owner {
    Owner::Key {
        id: credential.key_id.clone(),
        generation,
    }
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
    fn sessions_end_when_they_expire_or_are_closed() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let admin = Owner::Operator(digest("admin"));
        let id = sessions.open(admin.clone(), t0);
        assert_eq!(id.len(), 64);
        assert!(sessions.owner(&id, t0) == Some(admin.clone()));
        assert!(sessions.owner("guess", t0).is_none());
        assert!(
            Owner::Operator(digest("rotated")) != admin,
            "a changed token is another owner"
        );
        assert!(sessions
            .owner(&id, t0 + SESSION_TTL - Duration::from_secs(1))
            .is_some());
        assert!(sessions.owner(&id, t0 + SESSION_TTL).is_none(), "expired");
        let key = Owner::Key {
            id: "k".into(),
            generation: 1,
        };
        let other = sessions.open(key.clone(), t0);
        assert_ne!(id, other);
        assert!(sessions.owner(&other, t0) == Some(key));
        sessions.close(&other);
        assert!(sessions.owner(&other, t0).is_none());
        assert!(
            sessions.owner(&id, t0).is_some(),
            "only the closed one ends"
        );
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
