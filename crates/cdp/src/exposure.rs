//! No silent insecure start: a process whose listener other hosts can reach refuses to start
//! while a secret that listener relies on is a development default or a placeholder
//! (`change-me…`, `replace-me…`, as the compose and k8s files ship). On loopback the defaults
//! stay usable for development, with a warning.

use crate::config::CdpConfig;
use crate::runtime::Stages;

/// A secret left at a default while a listener is exposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} ({env}) is {why}, and {listener} = {addr} is reachable from other hosts: set {env} to a long random value (`openssl rand -hex 32`), or listen on loopback")]
pub struct Exposed {
    pub setting: &'static str,
    pub env: &'static str,
    pub why: &'static str,
    pub listener: &'static str,
    pub addr: String,
}

/// Whether `addr` (`host:port`) accepts connections from loopback only.
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
        return socket.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

/// A value a deployment file ships for the operator to replace.
fn is_placeholder(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    ["change-me", "changeme", "replace-me", "replaceme"]
        .iter()
        .any(|p| v.contains(p))
}

/// What is wrong with a secret: `default` when it is the shipped default, "a placeholder"
/// when it is one, else nothing.
fn weakness(is_default: bool, default: &'static str, value: &str) -> Option<&'static str> {
    if is_default {
        Some(default)
    } else {
        is_placeholder(value).then_some("a placeholder")
    }
}

/// The first secret that must not keep its value given the listeners of `stages`.
pub fn check(config: &CdpConfig, stages: Stages) -> Result<(), Exposed> {
    let control = &config.control;
    let token = (
        "auth.token_secret",
        "CDP_AUTH__TOKEN_SECRET",
        weakness(
            config.auth.is_dev_secret(),
            "the development default",
            &config.auth.token_secret,
        ),
    );
    let admin = (
        "control.admin_token",
        "CDP_CONTROL__ADMIN_TOKEN",
        weakness(
            control.admin_token == cdp_control::settings::DEV_ADMIN_TOKEN,
            "the development default",
            &control.admin_token,
        ),
    );
    let key = (
        "control.secret_key",
        "CDP_CONTROL__SECRET_KEY",
        weakness(
            control.is_dev_secret_key(),
            "the public development key",
            &control.secret_key,
        ),
    );
    // Each exposed listener, and the secrets whoever reaches it could exploit.
    let mut listeners: Vec<(&'static str, &str, Vec<_>)> = Vec::new();
    if stages.edge {
        listeners.push(("edge.listen", &config.edge.listen, vec![token]));
    }
    if stages.control {
        listeners.push((
            "control.listen",
            &config.control.listen,
            vec![token, admin, key],
        ));
    }
    if stages.profile || stages.engine {
        // The lookups control routes there carry the admin token.
        listeners.push((
            "profile.query_listen",
            &config.profile.query_listen,
            vec![admin],
        ));
    }
    for (listener, addr, secrets) in listeners {
        if is_loopback(addr) {
            continue;
        }
        if let Some((setting, env, Some(why))) = secrets.into_iter().find(|s| s.2.is_some()) {
            return Err(Exposed {
                setting,
                env,
                why,
                listener,
                addr: addr.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn exposed_control() -> CdpConfig {
        let mut c = CdpConfig::default();
        c.control.listen = "0.0.0.0:8081".into();
        c
    }

    #[test]
    fn loopback_is_told_from_exposed_addresses() {
        for addr in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.2:1",
        ] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "edge.internal:8080",
        ] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }

    #[test]
    fn defaults_are_fine_on_loopback_and_refused_when_exposed() {
        let only = |edge, control| Stages {
            edge,
            control,
            ..Stages::NONE
        };
        assert_eq!(check(&CdpConfig::default(), Stages::ALL), Ok(()));

        let mut c = exposed_control();
        let e = check(&c, only(false, true)).unwrap_err();
        assert_eq!(
            (e.setting, e.why),
            ("auth.token_secret", "the development default")
        );
        assert!(e.to_string().contains("CDP_AUTH__TOKEN_SECRET"), "{e}");
        assert!(
            e.to_string().contains("control.listen = 0.0.0.0:8081"),
            "{e}"
        );
        // Exposing control does not concern a process that runs only the edge on loopback.
        assert_eq!(check(&c, only(true, false)), Ok(()));

        c.auth.token_secret = "change-me-secret".into();
        let e = check(&c, only(false, true)).unwrap_err();
        assert_eq!((e.setting, e.why), ("auth.token_secret", "a placeholder"));
        c.auth.token_secret = STRONG.into();
        let e = check(&c, only(false, true)).unwrap_err();
        assert_eq!(e.setting, "control.admin_token");
        c.control.admin_token = "replace-me".into();
        assert_eq!(
            check(&c, only(false, true)).unwrap_err().why,
            "a placeholder"
        );
        c.control.admin_token = STRONG.into();
        let e = check(&c, only(false, true)).unwrap_err();
        assert_eq!(
            (e.setting, e.why),
            ("control.secret_key", "the public development key")
        );
        c.control.secret_key = STRONG.into();
        assert_eq!(check(&c, only(false, true)), Ok(()));
    }

    /// The check runs before anything else: no broker is contacted, nothing listens.
    #[tokio::test]
    async fn start_refuses_an_exposed_edge_with_the_development_secret() {
        let mut c = CdpConfig::default();
        c.kafka.bootstrap_servers = "127.0.0.1:1".into();
        c.edge.listen = "0.0.0.0:0".into();
        let edge = Stages {
            edge: true,
            ..Stages::NONE
        };
        match crate::start(&c, edge).await {
            Err(crate::StartError::Exposed(e)) => assert_eq!(e.setting, "auth.token_secret"),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("started with the development token secret on 0.0.0.0"),
        }
    }

    #[test]
    fn an_exposed_edge_needs_only_a_real_token_secret() {
        let mut c = CdpConfig::default();
        c.edge.listen = "0.0.0.0:8080".into();
        let edge = Stages {
            edge: true,
            ..Stages::NONE
        };
        assert_eq!(check(&c, edge).unwrap_err().setting, "auth.token_secret");
        c.auth.token_secret = STRONG.into();
        assert_eq!(check(&c, edge), Ok(()));
    }
}
