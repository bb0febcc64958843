//! End-to-end tests against a real broker (one tansu per test) and real HTTP.

mod auth;
mod authorization;
mod avro_json_parity;
mod browser_sdk;
mod catalog;
mod client;
mod collection;
mod dashboard;
mod explain;
mod health;
mod identity_config;
mod lake;
mod outage;
mod profile;
mod profile_api;
mod schedules;
mod segment;
mod sinks;
mod stream;
mod validate;
