//! A registry served on 127.0.0.1:0 in front of a real broker.

use std::net::SocketAddr;

use cdp_contract::admin::ensure_topics;
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_registry::{confluent_router, xdm_router, RegistryState};

/// A fresh namespace per test, so the tests can share an external broker
/// (`CDP_TEST_BOOTSTRAP`) run after run.
pub fn namespace() -> Topics {
    Topics::new(cdp_test_support::unique_name("registry"))
}

/// A registry instance on `topics`; two instances on one namespace share their state.
pub async fn serve(kafka: &KafkaSettings, topics: &Topics) -> String {
    let topics = topics.clone();
    ensure_topics(kafka, &[cdp_control::catalog::topic_spec(&topics)])
        .await
        .expect("catalog topic");
    let view = CatalogView::start(kafka, &topics).expect("catalog view");
    let writer = CatalogWriter::new(kafka, &topics, view.clone()).expect("catalog writer");
    let state = RegistryState::start(kafka, &topics, view, writer)
        .await
        .expect("registry state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, confluent_router(&state).merge(xdm_router(state))).await
    });
    format!("http://{addr}")
}
