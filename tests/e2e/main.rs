//! End-to-end tests against a real broker (one tansu per test) and real HTTP.

mod auth;
mod avro_json_parity;
mod catalog;
mod collection;
mod health;
mod lake;
mod outage;
mod stream;
mod validate;
