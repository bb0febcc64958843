//! The registry's state, shared by both APIs, and the Confluent router (state applied, ready to
//! `.merge()` into the control server). The XDM router is `xdm_http::xdm_router`.

use std::time::Duration;

use axum::Router;
use cdp_catalog::{CatalogView, CatalogWriter};
use cdp_contract::{KafkaSettings, Topics};

use crate::confluent::{self, SchemaLog, SchemaLogError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Schemas(#[from] SchemaLogError),
}

/// What the registry's handlers need: the catalog (XDM schemas and datasets live there) and the
/// schemas topic (Confluent subjects).
#[derive(Clone)]
pub struct RegistryState {
    pub view: CatalogView,
    pub writer: CatalogWriter,
    pub schemas: SchemaLog,
}

impl RegistryState {
    /// Ensures the schemas topic (1 partition, compacted), starts following it and waits until
    /// what it already holds is applied, so the first answers are complete.
    pub async fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        view: CatalogView,
        writer: CatalogWriter,
    ) -> Result<Self, RegistryError> {
        let schemas = SchemaLog::start(kafka, topics).await?;
        schemas.caught_up(Duration::from_secs(30)).await?;
        Ok(Self {
            view,
            writer,
            schemas,
        })
    }
}

/// The Confluent-compatible subset, for ordinary Kafka tooling, behind credentials
/// (`auth`, see [`confluent::RegistryAuth`]) and with bounded registrations.
pub fn confluent_router(
    state: &RegistryState,
    auth: confluent::RegistryAuth,
    limits: confluent::Limits,
) -> Router {
    confluent::routes()
        .with_state(confluent::Api {
            log: state.schemas.clone(),
            limits,
        })
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            confluent::require_credential,
        ))
}
