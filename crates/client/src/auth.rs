//! Credentials: none, a fixed access token, or an API key exchanged at control's
//! `POST /tokens` for an access token that is renewed before it expires and once when the edge
//! refuses it.

use std::fmt;

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::ClientError;

/// How the client authenticates to the edge.
#[derive(Clone, Default)]
pub enum Auth {
    /// The stream does not require authentication.
    #[default]
    None,
    /// A bearer access token obtained elsewhere; it is not renewed.
    Token(String),
    /// An API key (`cdpk.<id>.<secret>`): the client gets access tokens from
    /// `POST {control_url}/tokens` and renews them itself.
    ApiKey {
        control_url: String,
        api_key: String,
    },
}

// Secrets stay out of logs and panic messages.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::ApiKey { control_url, .. } => f
                .debug_struct("ApiKey")
                .field("control_url", control_url)
                .field("api_key", &"<redacted>")
                .finish(),
        }
    }
}

/// Control's answer (crates/control/src/http/tokens.rs): `expiresAt` in Unix seconds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_at: Option<i64>,
    /// Not sent by control today; accepted so a gateway in front of it that speaks OAuth's
    /// `expires_in` works too.
    #[serde(default)]
    expires_in: Option<i64>,
}

pub(crate) struct Cached {
    token: String,
    /// Unix seconds after which the client fetches a new token.
    renew_at: i64,
}

pub(crate) enum Credentials {
    None,
    Fixed(String),
    ApiKey {
        url: Url,
        api_key: String,
        days: u32,
        // An async mutex: concurrent batches wait for the one fetch instead of each asking
        // control for a token.
        cached: Mutex<Option<Cached>>,
    },
}

/// Renew this long before expiry, so a token is never sent in its last minute (clock skew,
/// a request that waits in a retry).
const RENEW_BEFORE: i64 = 60;

impl Credentials {
    pub fn new(auth: Auth, days: u32) -> Result<Self, ClientError> {
        Ok(match auth {
            Auth::None => Credentials::None,
            Auth::Token(t) => Credentials::Fixed(t),
            Auth::ApiKey {
                control_url,
                api_key,
            } => Credentials::ApiKey {
                url: crate::client::join(&control_url, &["tokens"])?,
                api_key,
                days,
                cached: Mutex::new(None),
            },
        })
    }

    /// Whether a refused token can be replaced by a fresh one.
    pub fn renewable(&self) -> bool {
        matches!(self, Credentials::ApiKey { .. })
    }

    /// The bearer token for the next request, fetching one when there is none or it is about
    /// to expire.
    pub async fn token(&self, http: &reqwest::Client) -> Result<Option<String>, ClientError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Fixed(t) => Ok(Some(t.clone())),
            Credentials::ApiKey {
                url,
                api_key,
                days,
                cached,
            } => {
                let mut cached = cached.lock().await;
                let now = now_secs();
                if let Some(c) = cached.as_ref().filter(|c| now < c.renew_at) {
                    return Ok(Some(c.token.clone()));
                }
                let fresh = fetch(http, url, api_key, *days).await?;
                let token = fresh.token.clone();
                *cached = Some(fresh);
                Ok(Some(token))
            }
        }
    }

    /// Forgets `refused` so the next `token` fetches a new one. Another batch may already have
    /// replaced it; then the newer token is kept.
    pub async fn invalidate(&self, refused: &str) {
        if let Credentials::ApiKey { cached, .. } = self {
            let mut cached = cached.lock().await;
            if cached.as_ref().is_some_and(|c| c.token == refused) {
                *cached = None;
            }
        }
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    api_key: &str,
    days: u32,
) -> Result<Cached, ClientError> {
    let body = serde_json::json!({"apiKey": api_key, "days": days}).to_string();
    let resp = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
    if !(200..300).contains(&status) {
        let message = crate::client::problem_detail(&bytes);
        // Throttled or unavailable control: worth another attempt (the caller retries). A
        // refused key is not.
        if crate::error::retryable_status(status) {
            return Err(ClientError::Status {
                url: url.to_string(),
                status,
                message,
            });
        }
        return Err(ClientError::Token {
            url: url.to_string(),
            message: format!("{status}: {message}"),
        });
    }
    let answer: TokenAnswer =
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: url.to_string(),
            message: format!("expected {{\"accessToken\": …, \"expiresAt\": …}}: {e}"),
        })?;
    let now = now_secs();
    let expires_at = answer
        .expires_at
        .or(answer.expires_in.map(|s| now + s))
        .unwrap_or(now + i64::from(days) * 86_400);
    // Renew a minute before expiry, or half way through a token that lives less than two.
    let lifetime = (expires_at - now).max(0);
    let renew_at = expires_at - RENEW_BEFORE.min(lifetime / 2);
    tracing::debug!(expires_at, renew_at, "access token obtained");
    Ok(Cached {
        token: answer.access_token,
        renew_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let a = Auth::ApiKey {
            control_url: "http://c".into(),
            api_key: "cdpk.x.secret".into(),
        };
        let shown = format!("{a:?} {:?}", Auth::Token("tok-secret".into()));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("http://c"));
    }
}
