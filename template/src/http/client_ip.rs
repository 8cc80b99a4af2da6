//! Who the client is: the connection's peer address, or, when the connection comes from a
//! trusted proxy, the address that proxy names in `X-Forwarded-For`. Resolved once per request
//! for the rate limits and the logs. A trusted proxy also says whether the client came over
//! HTTPS, and only then does the response carry `Strict-Transport-Security`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::error::ApiError;

/// The client's address, as [`client_ip`] resolved it; set on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .copied()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no client address on the request")))
    }
}

/// Whether `ip` is one of the trusted proxies, whose forwarding headers count.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client behind the trusted proxy `proxy`: the rightmost `X-Forwarded-For` entry that is
/// not itself a trusted proxy (entries further left were written by the client and prove
/// nothing), or the proxy itself when the header names no one.
fn forwarded_client(proxy: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = proxy;
    for entry in forwarded.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// Whether the client reached a trusted proxy over HTTPS, by the last `X-Forwarded-Proto`
/// value: the one the nearest proxy wrote.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Who the client of a connection from `peer` is, and whether it came over HTTPS: only a
/// trusted proxy's forwarding headers can say anything other than the peer and plain HTTP.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> (IpAddr, bool) {
    if is_trusted(peer, trusted) {
        (forwarded_client(peer, headers, trusted), forwarded_https(headers))
    } else {
        (peer, false)
    }
}

/// Resolves the client of `request`, stores it on the request for the rate limits and
/// handlers, and says whether the client came over HTTPS.
pub fn resolve_request(request: &mut Request, trusted: &[IpNet]) -> (IpAddr, bool) {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let (ip, https) = resolve(peer, request.headers(), trusted);
    request.extensions_mut().insert(ClientIp(ip));
    (ip, https)
}

/// The address resolved for `request`, or the unspecified address when none was (a route
/// mounted outside the middleware stack).
pub fn of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |client| client.0)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let client: IpAddr = "203.0.113.7".parse().expect("ip");

        // A spoofed leftmost entry is ignored: the proxy appended the real client last.
        let client_ip = |peer, headers| resolve(peer, &headers, &trusted).0;

        assert_eq!(client_ip(proxy, forwarded("1.2.3.4, 203.0.113.7")), client);
        // Through two trusted proxies.
        assert_eq!(client_ip(proxy, forwarded("203.0.113.7, 10.1.2.3")), client);
        // From an untrusted peer the header means nothing.
        assert_eq!(client_ip(stranger, forwarded("203.0.113.7")), stranger);
        // A trusted peer without the header, or with garbage, is the client itself.
        assert_eq!(client_ip(proxy, HeaderMap::new()), proxy);
        assert_eq!(client_ip(proxy, forwarded("not-an-ip")), proxy);
    }

    #[test]
    fn only_a_trusted_proxy_says_the_client_came_over_https() {
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let proto = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-proto", HeaderValue::from_str(value).expect("header"));
            headers
        };

        let over_https = |peer, headers| resolve(peer, &headers, &trusted).1;

        assert!(over_https(proxy, proto("https")));
        assert!(over_https(proxy, proto("http, HTTPS")), "the nearest proxy's word");
        assert!(!over_https(proxy, proto("https, http")));
        assert!(!over_https(proxy, HeaderMap::new()));
        assert!(!over_https(stranger, proto("https")));
    }
}
