//! Test harness for the Kinesis tests: kinesalite (from cdp-test-support) as a delivery target
//! and a fault-injecting proxy in front of it ([`FaultProxy`]).

pub mod fault_proxy;

pub use cdp_test_support::{Kinesalite, StreamRecord};
pub use fault_proxy::{FaultProxy, Faults};

use cdp_sinks::delivery::{KinesisTarget, Secret};

/// A target for `stream` on the server, with its made-up credentials.
pub fn target(kinesis: &Kinesalite, stream: &str) -> KinesisTarget {
    KinesisTarget {
        stream: stream.to_string(),
        region: Kinesalite::REGION.into(),
        endpoint: Some(kinesis.endpoint()),
        access_key_id: Kinesalite::ACCESS_KEY_ID.into(),
        secret_key: Secret::new(Kinesalite::SECRET_KEY),
    }
}
