//! Rate limiting on [`governor`] (GCRA, keyed): N requests per minute per key, answering 429 with `Retry-After`;
//! the client address the auth routes are keyed on (taken from `X-Forwarded-For` only behind trusted proxies, IPv6
//! grouped by /64); and [`RateLimit`], the one middleware that applies a limit to a scope, keyed by what the
//! scope's key function reads from the request (the routes pick the limiter and the key; this module knows neither
//! users nor tokens).

use std::fmt;
use std::future::{Ready, ready};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::HeaderMap;
use futures_util::future::LocalBoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

/// How often idle keys are dropped from a limiter's map (at most; a sweep runs on the next check after this).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The `governor` limiter of one [`KeyedLimiter`]: keyed, on a sharded map, without middleware.
type Governor<K, C> =
    RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Allows `per_minute` requests per key per minute, with bursts up to `per_minute` (a GCRA limiter from
/// `governor`, keyed through a sharded `DashMap`, so checks of different keys do not wait on one lock).
///
/// Memory stays bounded by the keys seen within about a minute: a key whose bucket is full again carries no state,
/// and at most every [`SWEEP_INTERVAL`] the next check drops those (`retain_recent`) and shrinks the map.
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: Option<Governor<K, C>>,
    clock: C,
    last_sweep: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> fmt::Debug for KeyedLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("enabled", &self.limiter.is_some())
            .field("keys", &self.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter of `per_minute` requests per key; 0 disables it.
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    /// A limiter on `clock` (tests pass `governor::clock::FakeRelativeClock`); 0 disables it.
    pub fn with_clock(per_minute: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            RateLimiter::dashmap_with_clock(Quota::per_minute(n).allow_burst(n), clock.clone())
        });
        Self {
            limiter,
            clock,
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes one request for `key`, or answers how long to wait (429 with `Retry-After`, in whole seconds, at least 1).
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        self.maybe_sweep();
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0_u32);
            ApiError::RateLimited {
                retry_after_secs: secs.max(1),
            }
        })
    }

    /// Drops the keys whose limit is fully replenished (they carry no state) and shrinks the map.
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys the limiter holds.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }

    /// Whether the limiter holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn maybe_sweep(&self) {
        // `try_lock`: a check never waits for a sweep another request is running.
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.elapsed() >= SWEEP_INTERVAL {
            *last = Instant::now();
            drop(last);
            self.retain_recent();
        }
    }
}

/// The key of a client address: IPv4 addresses as they are, IPv6 addresses by their /64 network (one subscriber
/// usually holds a whole /64 and can rotate addresses inside it at will); IPv4-mapped IPv6 addresses count as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(64))),
    }
}

/// The rate-limit key of a request: its client address ([`TrustedProxies::client_ip`]), grouped by
/// [`client_key`]; `None` when the connection has no peer address (test requests, Unix sockets).
pub fn request_client_key(
    trusted: &TrustedProxies,
    req: &actix_web::HttpRequest,
) -> Option<IpAddr> {
    req.peer_addr()
        .map(|addr| client_key(trusted.client_ip(addr.ip(), req.headers())))
}

/// How a scope's requests are keyed; `None` lets the request through unlimited (its handler answers it).
type KeyFn<K> = dyn Fn(&ServiceRequest) -> Option<K>;

/// The rate-limit middleware of one scope: takes one request from `limiter` for the key `key` reads, before the
/// scope's extractors and handlers run; over the limit it answers 429 with `Retry-After` and the error envelope
/// itself, so the access log and the correlation id of the outer middleware see a response.
pub struct RateLimit<K: Hash + Eq + Clone> {
    limiter: Arc<KeyedLimiter<K>>,
    key: Rc<KeyFn<K>>,
}

impl<K: Hash + Eq + Clone> Clone for RateLimit<K> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key: Rc::clone(&self.key),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// Limits with `limiter`, keyed by `key`.
    pub fn new(
        limiter: Arc<KeyedLimiter<K>>,
        key: impl Fn(&ServiceRequest) -> Option<K> + 'static,
    ) -> Self {
        Self {
            limiter,
            key: Rc::new(key),
        }
    }
}

impl RateLimit<IpAddr> {
    /// Limits per client address ([`request_client_key`]; a request without a peer address counts as `0.0.0.0`).
    /// Only requests for a route count: a path under the scope that no route matches passes to its 404.
    pub fn per_client_address(limiter: Arc<KeyedLimiter<IpAddr>>, trusted: TrustedProxies) -> Self {
        Self::new(limiter, move |req| {
            if !req.request().resource_map().has_resource(req.path()) {
                return None;
            }
            Some(
                request_client_key(&trusted, req.request())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            )
        })
    }
}

impl<S, B, K> Transform<S, ServiceRequest> for RateLimit<K>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    K: Hash + Eq + Clone + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitService<S, K>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitService {
            service: Rc::new(service),
            limit: self.clone(),
        }))
    }
}

/// [`RateLimit`] around one scope's service.
pub struct RateLimitService<S, K: Hash + Eq + Clone> {
    service: Rc<S>,
    limit: RateLimit<K>,
}

impl<S, B, K> Service<ServiceRequest> for RateLimitService<S, K>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    K: Hash + Eq + Clone + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if let Some(key) = (self.limit.key)(&req)
            && let Err(err) = self.limit.limiter.check(&key)
        {
            let refused = req
                .into_response(err.error_response())
                .map_into_right_body();
            return Box::pin(ready(Ok(refused)));
        }
        let service = Rc::clone(&self.service);
        Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) })
    }
}

/// The header the client address is read from behind trusted proxies. RFC 7239 `Forwarded` is not read: a proxy
/// that maintains one of the two headers usually passes the other through as the client sent it, so reading both
/// would let clients choose their own address.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// Why an entry of the trusted-proxy list (`TRUSTED_PROXIES`) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyListError {
    /// The entry is neither an IP address nor `address/prefix`.
    #[error("{entry:?} is not an IP address or a CIDR range (such as 10.0.0.0/8 or fd00::/8)")]
    NotAnAddress {
        /// The entry as written.
        entry: String,
    },
    /// The prefix length is longer than the address.
    #[error("{entry:?} has a prefix length above {max}")]
    PrefixTooLong {
        /// The entry as written.
        entry: String,
        /// The address length in bits (32 or 128).
        max: u8,
    },
}

/// An IP network: a single address (`10.1.2.3`, `::1`) or a CIDR range (`10.0.0.0/8`, `fd00::/8`). Bits past the
/// prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`); IPv4-mapped IPv6 addresses are stored as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr` with `prefix` leading bits, or `None` when the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        match addr {
            IpAddr::V4(v4) if prefix <= 32 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
                prefix,
            }),
            IpAddr::V6(v6) if prefix <= 128 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
                prefix,
            }),
            _ => None,
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNetwork {
    type Err = ProxyListError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let not_an_address = || ProxyListError::NotAnAddress {
            entry: entry.to_owned(),
        };
        let trimmed = entry.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| not_an_address())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) => {
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(not_an_address());
                }
                digits
                    .parse::<u8>()
                    .map_err(|_| ProxyListError::PrefixTooLong {
                        entry: entry.to_owned(),
                        max,
                    })?
            }
        };
        Self::new(addr, prefix).ok_or(ProxyListError::PrefixTooLong {
            entry: entry.to_owned(),
            max,
        })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`); empty (the default) believes no header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        Self { networks }
    }

    /// Parses a comma-separated list of IP addresses and CIDR ranges; blank entries are skipped, so an empty
    /// string trusts nothing.
    pub fn parse(list: &str) -> Result<Self, ProxyListError> {
        let networks = list
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| entry.trim().parse())
            .collect::<Result<Vec<IpNetwork>, _>>()?;
        Ok(Self { networks })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNetwork] {
        &self.networks
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// The address of the client behind `peer`, the address the connection came from.
    ///
    /// When `peer` is not a trusted proxy this is `peer`, whatever the headers say. Otherwise the
    /// `X-Forwarded-For` entries (all header lines, in order) are walked from the right, skipping trusted hops:
    /// the first untrusted address is the client, and when every entry is trusted the leftmost one is. A missing
    /// header, an entry that is not an address (`unknown`, an obfuscated name, garbage) or a header that is not
    /// visible ASCII on the way gives `peer`, so a client cannot make up a key of its own. Entries may carry a port
    /// (`203.0.113.7:4711`, `[2001:db8::1]:4711`); IPv4-mapped IPv6 addresses are reported as IPv4.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        for value in headers.get_all(FORWARDED_FOR_HEADER) {
            let Ok(text) = value.to_str() else {
                return peer;
            };
            hops.extend(text.split(','));
        }
        let mut leftmost = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return peer;
            };
            if !self.is_trusted(ip) {
                return ip;
            }
            leftmost = ip;
        }
        leftmost
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port` for IPv6).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let is_port = |s: &str| {
        !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u16>().is_ok()
    };
    let ip = if let Some(rest) = hop.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(addr.parse().ok()?)
    } else if let Ok(ip) = hop.parse::<IpAddr>() {
        ip
    } else {
        let (addr, port) = hop.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(addr.parse().ok()?)
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn allows_the_burst_then_limits_with_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter = KeyedLimiter::with_clock(3, clock.clone());
        for _ in 0..3 {
            limiter.check(&"a").unwrap();
        }
        match limiter.check(&"a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 20),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        limiter.check(&"b").unwrap();
        clock.advance(Duration::from_secs(19));
        match limiter.check(&"a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        clock.advance(Duration::from_secs(1));
        limiter.check(&"a").unwrap();
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = KeyedLimiter::new(0);
        for _ in 0..1000 {
            limiter.check(&"a").unwrap();
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn idle_keys_are_dropped_so_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter = KeyedLimiter::with_clock(10, clock.clone());
        for n in 0..5000u32 {
            limiter.check(&n).unwrap();
        }
        assert_eq!(limiter.len(), 5000);
        limiter.retain_recent();
        assert_eq!(limiter.len(), 5000, "keys still replenishing are kept");
        clock.advance(Duration::from_secs(60));
        limiter.retain_recent();
        assert_eq!(limiter.len(), 0, "fully replenished keys carry no state");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_network() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        // Rotating addresses inside one /64 does not escape the limit.
        let limiter = KeyedLimiter::new(2);
        limiter.check(&client_key(ip("2001:db8::1"))).unwrap();
        limiter.check(&client_key(ip("2001:db8::2"))).unwrap();
        assert!(limiter.check(&client_key(ip("2001:db8::3"))).is_err());
        limiter.check(&client_key(ip("2001:db8:0:1::1"))).unwrap();
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    /// Headers with one `X-Forwarded-For` line per entry of `lines`.
    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                HeaderName::from_static(FORWARDED_FOR_HEADER),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn proxy_lists_parse_addresses_and_ranges() {
        assert!(proxies("").is_empty());
        assert!(proxies(" , ").is_empty());
        let list = proxies(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1,");
        let shown: Vec<String> = list.networks().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "::1/128"]
        );
        assert_eq!(
            proxies("10.1.2.3/8").networks()[0].to_string(),
            "10.0.0.0/8",
            "host bits are ignored"
        );
        assert_eq!(
            proxies("::ffff:10.0.0.0/104").networks()[0].to_string(),
            "10.0.0.0/8",
            "an IPv4-mapped range is an IPv4 range"
        );
    }

    #[test]
    fn bad_proxy_list_entries_are_rejected_with_the_entry() {
        for bad in [
            "10.0.0.300",
            "example.com",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/9",
            "10.0.0.0/-1",
            "fe80::1%eth0",
            "10.0.0.1:80",
            "10.0.0.0/8 192.168.0.0/16",
        ] {
            match TrustedProxies::parse(&format!("127.0.0.1, {bad}")) {
                Err(ProxyListError::NotAnAddress { entry }) => assert_eq!(entry.trim(), bad),
                other => panic!("{bad}: expected NotAnAddress, got {other:?}"),
            }
        }
        for (bad, max) in [
            ("10.0.0.0/33", 32),
            ("fd00::/129", 128),
            ("10.0.0.0/999", 32),
        ] {
            assert_eq!(
                TrustedProxies::parse(bad),
                Err(ProxyListError::PrefixTooLong {
                    entry: bad.to_owned(),
                    max
                })
            );
        }
        let message = TrustedProxies::parse("10.0.0.300").unwrap_err().to_string();
        assert!(message.contains("\"10.0.0.300\""), "{message}");
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let list = proxies("10.0.0.0/8, 192.168.1.7, fd00::/8, 0.0.0.0/0");
        assert!(list.networks()[0].contains(ip("10.255.255.255")));
        assert!(!list.networks()[0].contains(ip("11.0.0.0")));
        assert!(list.networks()[1].contains(ip("192.168.1.7")));
        assert!(!list.networks()[1].contains(ip("192.168.1.8")));
        assert!(list.networks()[2].contains(ip("fdff:ffff::1")));
        assert!(!list.networks()[2].contains(ip("fe00::1")));
        assert!(
            !list.networks()[2].contains(ip("10.0.0.1")),
            "no match across families"
        );
        assert!(list.networks()[3].contains(ip("203.0.113.7")));
        assert!(
            list.networks()[0].contains(ip("::ffff:10.0.0.1")),
            "an IPv4-mapped peer (dual-stack listener) matches its IPv4 range"
        );
    }

    #[test]
    fn headers_are_ignored_without_trusted_proxies_or_from_an_untrusted_peer() {
        let spoofed = forwarded(&["198.51.100.1"]);
        assert_eq!(
            TrustedProxies::default().client_ip(ip("203.0.113.7"), &spoofed),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies("10.0.0.0/8").client_ip(ip("203.0.113.7"), &spoofed),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies("10.0.0.0/8").client_ip(ip("::ffff:203.0.113.7"), &spoofed),
            ip("203.0.113.7"),
            "an IPv4-mapped peer is reported as IPv4"
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let list = proxies("10.0.0.0/8");
        let peer = ip("10.0.0.4");
        let cases: &[(&[&str], &str)] = &[
            (&[], "10.0.0.4"),
            (&["203.0.113.7"], "203.0.113.7"),
            (&["203.0.113.7, 10.0.0.2, 10.0.0.3"], "203.0.113.7"),
            // A client's own X-Forwarded-For is kept by the proxies, left of what they append.
            (&["198.51.100.1, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),
            (&["10.9.9.9, 203.0.113.7"], "203.0.113.7"),
            (&["garbage, 203.0.113.7"], "203.0.113.7"),
            // Several header lines form one list, in order.
            (&["198.51.100.1", "203.0.113.7", "10.0.0.2"], "203.0.113.7"),
            // Every hop trusted: the leftmost.
            (&["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
            // Ports and IPv4-mapped entries.
            (&["203.0.113.7:4711"], "203.0.113.7"),
            (&["::ffff:203.0.113.7"], "203.0.113.7"),
            (&["[2001:db8::7]:4711"], "2001:db8::7"),
            (&["[2001:db8::7]"], "2001:db8::7"),
        ];
        for (lines, client) in cases {
            assert_eq!(
                list.client_ip(peer, &forwarded(lines)),
                ip(client),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn ipv6_chains_are_walked_like_ipv4_ones() {
        let list = proxies("fd00::/8, 10.0.0.0/8");
        let headers = forwarded(&["2001:db8::7, fd00::2, 10.0.0.3"]);
        assert_eq!(list.client_ip(ip("fd00::1"), &headers), ip("2001:db8::7"));
        assert_eq!(
            list.client_ip(ip("2001:db8::99"), &headers),
            ip("2001:db8::99"),
            "an untrusted IPv6 peer is the client"
        );
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let list = proxies("10.0.0.0/8");
        let peer = ip("10.0.0.4");
        for lines in [
            &["garbage"][..],
            &["unknown"],
            &[""],
            &["203.0.113.7,"],
            &["203.0.113.7, , 10.0.0.2"],
            &["203.0.113.7 10.0.0.2"],
            &["203.0.113.7:99999"],
            &["203.0.113.7:"],
            &["[2001:db8::7"],
            &["[2001:db8::7]x"],
            &["[203.0.113.7]"],
            &["2001:db8::7:4711:"],
            &["_hidden"],
            &["fe80::1%eth0"],
        ] {
            assert_eq!(list.client_ip(peer, &forwarded(lines)), peer, "{lines:?}");
        }
        let mut not_ascii = HeaderMap::new();
        not_ascii.append(
            HeaderName::from_static(FORWARDED_FOR_HEADER),
            HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap(),
        );
        assert_eq!(list.client_ip(peer, &not_ascii), peer);
    }
}
