//! The dashboard's sign-in: the admin token, typed once into a form, becomes a session cookie
//! (a digest of the token, so the token itself is not stored in the browser, and rotating it
//! signs every session out). API-style `Authorization: Bearer <admin token>` is accepted too.

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

/// The cookie value for a token: what a session proves it knew.
fn session_value(admin_token: &str) -> String {
    hex::encode(Sha256::digest(format!("cdp-ui-session:{admin_token}")))
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

fn signed_in(headers: &HeaderMap, admin_token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| same(t, admin_token)) {
        return true;
    }
    cookie_of(headers, COOKIE).is_some_and(|c| same(c, &session_value(admin_token)))
}

/// Pages need a session; a browser without one is sent to the sign-in form and back.
pub async fn require_session(State(ui): State<UiState>, req: Request, next: Next) -> Response {
    if signed_in(req.headers(), &ui.admin_token) {
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

pub async fn login(State(ui): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref()).to_string();
    if !same(form.token.trim(), &ui.admin_token) {
        tracing::info!("dashboard sign-in refused: wrong admin token");
        let mut resp = form_page(&next, Some("That is not the admin token.")).into_response();
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return resp;
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict",
        session_value(&ui.admin_token)
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub async fn logout() -> Response {
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
    fn a_session_is_the_cookie_of_the_current_token_or_the_bearer_token() {
        let mut h = HeaderMap::new();
        assert!(!signed_in(&h, "admin"));
        let cookie = format!("a=b; {COOKIE}={}", session_value("admin"));
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(signed_in(&h, "admin"));
        // A rotated token signs the session out.
        assert!(!signed_in(&h, "rotated"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer admin"),
        );
        assert!(signed_in(&h, "admin"));
        assert!(!signed_in(&h, "other"));
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
