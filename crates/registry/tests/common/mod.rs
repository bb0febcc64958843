//! A registry served on 127.0.0.1:0 in front of a real broker.

use std::net::SocketAddr;

use cdp_contract::admin::ensure_topics;
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_registry::confluent::{Limits, RegistryAuth};
use cdp_registry::{confluent_router, xdm_router, RegistryState};

/// The operator's (and the stages') credential of the registries these tests serve.
pub const ADMIN: &str = "registry-test-admin";
/// What the registries' access tokens are signed with.
pub const TOKEN_SECRET: &str = "registry-test-token-secret";

/// An HTTP client that presents the admin token on every request.
#[allow(dead_code)]
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A fresh namespace per test, so the tests can share an external broker
/// (`CDP_TEST_BOOTSTRAP`) run after run.
#[allow(dead_code)]
pub fn namespace() -> Topics {
    Topics::new(cdp_test_support::unique_name("registry"))
}

/// A registry instance on `topics`; two instances on one namespace share their state.
#[allow(dead_code)]
pub async fn serve(kafka: &KafkaSettings, topics: &Topics) -> String {
    serve_with(kafka, topics, Limits::default()).await.0
}

/// Like [`serve`], with the registrations' bounds; also the catalog it reads API keys from.
pub async fn serve_with(
    kafka: &KafkaSettings,
    topics: &Topics,
    limits: Limits,
) -> (String, CatalogView) {
    let topics = topics.clone();
    ensure_topics(kafka, &[cdp_control::catalog::topic_spec(&topics)])
        .await
        .expect("catalog topic");
    let view = CatalogView::start(kafka, &topics).expect("catalog view");
    let writer = CatalogWriter::new(kafka, &topics, view.clone()).expect("catalog writer");
    let authenticator = cdp_catalog::principal::Authenticator::new(
        ADMIN.into(),
        view.clone(),
        cdp_catalog::tokens::Tokens::new(TOKEN_SECRET),
    );
    let auth = RegistryAuth::new(authenticator.clone(), &topics.namespace);
    let state = RegistryState::start(kafka, &topics, view.clone(), writer)
        .await
        .expect("registry state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            confluent_router(&state, auth, limits).merge(xdm_router(state, authenticator)),
        )
        .await
    });
    (format!("http://{addr}"), view)
}
