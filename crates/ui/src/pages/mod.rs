//! One module per page. Each handler reads what it shows under short-lived locks and renders
//! it with [`crate::html`]; none writes anything.

pub mod batches;
pub mod datasets;
pub mod events;
pub mod flows;
pub mod overview;
pub mod profiles;
pub mod segments;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::html::{esc, Layout, Section};

const STYLE: &str = include_str!("../../assets/style.css");

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

/// A 404 page naming what is missing.
pub fn not_found(what: &str) -> Response {
    let body = format!(
        r#"<h1>Not found</h1><p class="empty">{}</p><p><a href="/ui">Back to the overview</a></p>"#,
        esc(what)
    );
    (
        axum::http::StatusCode::NOT_FOUND,
        Layout::page("Not found", Section::None).render(&body),
    )
        .into_response()
}

/// A figure with a big number, for the summary rows.
pub fn stat(id: &str, label: &str, value: &str, class: &str) -> String {
    format!(
        r#"<div class="stat {class}"><span class="label">{label}</span><span class="value" id="{id}">{value}</span></div>"#
    )
}
