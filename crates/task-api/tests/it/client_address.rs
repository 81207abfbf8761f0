//! The client address of the auth routes' rate limit: the peer, or behind a trusted proxy the `X-Forwarded-For`
//! client; forwarded headers from anyone else are ignored.

use std::net::SocketAddr;

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use task_api::rate_limit::TrustedProxies;

use crate::support::{Answer, Backend, Options, TestApp};

/// The ingress controller in front of the service.
const PROXY: &str = "10.0.0.1:43210";
/// A client that connects directly, from outside the trusted range.
const DIRECT: &str = "198.51.100.9:50000";

/// `POST /api/v1/auth/logout` (limited, no body, no hashing) from `peer`, with an optional `X-Forwarded-For`.
async fn logout(app: &TestApp, peer: &str, forwarded_for: Option<&str>) -> Answer {
    let peer: SocketAddr = peer.parse().expect("a socket address");
    let mut req = TestRequest::post()
        .uri("/api/v1/auth/logout")
        .peer_addr(peer);
    if let Some(value) = forwarded_for {
        req = req.insert_header(("x-forwarded-for", value));
    }
    app.call(req).await
}

#[track_caller]
fn assert_allowed(answer: &Answer, what: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{what}: {}", answer.text);
}

#[actix_web::test]
async fn clients_behind_a_trusted_proxy_get_separate_auth_limits() {
    let options = Options {
        auth_per_minute: 2,
        trusted_proxies: TrustedProxies::parse("10.0.0.0/8").expect("a valid list"),
        ..Options::new(Backend::Sqlite)
    };
    let app = TestApp::with(options).await;

    // Two clients behind the one proxy: each has its own two requests.
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..2 {
            assert_allowed(&logout(&app, PROXY, Some(client)).await, client);
        }
    }
    logout(&app, PROXY, Some("203.0.113.1"))
        .await
        .assert_error(429, "RATE_LIMITED");
    // A client that puts another address in its own header is still keyed on the address the proxy saw.
    logout(&app, PROXY, Some("203.0.113.77, 203.0.113.2"))
        .await
        .assert_error(429, "RATE_LIMITED");
    // A chain of trusted hops: the first untrusted address from the right is the client.
    assert_allowed(
        &logout(&app, PROXY, Some("203.0.113.3, 10.0.0.7")).await,
        "two trusted hops",
    );
    // Garbage from behind the proxy falls back to the proxy's own key instead of a fresh one.
    for _ in 0..2 {
        assert_allowed(
            &logout(&app, PROXY, Some("not-an-address")).await,
            "garbage",
        );
    }
    logout(&app, PROXY, Some("still-not-an-address"))
        .await
        .assert_error(429, "RATE_LIMITED");
    logout(&app, PROXY, None)
        .await
        .assert_error(429, "RATE_LIMITED");
}

#[actix_web::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    let options = Options {
        auth_per_minute: 2,
        trusted_proxies: TrustedProxies::parse("10.0.0.0/8").expect("a valid list"),
        ..Options::new(Backend::Sqlite)
    };
    let app = TestApp::with(options).await;
    assert_allowed(&logout(&app, DIRECT, Some("203.0.113.4")).await, "first");
    assert_allowed(&logout(&app, DIRECT, Some("203.0.113.5")).await, "second");
    // A third "client" is still the same peer.
    logout(&app, DIRECT, Some("203.0.113.6"))
        .await
        .assert_error(429, "RATE_LIMITED");
    // The spoofed addresses got no bucket of their own: behind the proxy they are fresh.
    assert_allowed(
        &logout(&app, PROXY, Some("203.0.113.4")).await,
        "the spoofed address",
    );
}

#[actix_web::test]
async fn without_trusted_proxies_every_client_of_a_proxy_shares_its_limit() {
    let options = Options {
        auth_per_minute: 2,
        ..Options::new(Backend::Sqlite)
    };
    let app = TestApp::with(options).await;
    assert_allowed(&logout(&app, PROXY, Some("203.0.113.1")).await, "first");
    assert_allowed(&logout(&app, PROXY, Some("203.0.113.2")).await, "second");
    logout(&app, PROXY, Some("203.0.113.3"))
        .await
        .assert_error(429, "RATE_LIMITED");
}
