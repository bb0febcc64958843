//! A JSON body extractor whose rejections are problem documents saying what is wrong.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};

use crate::problem::Problem;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(Problem::new(e.status(), e.body_text())),
        }
    }
}
