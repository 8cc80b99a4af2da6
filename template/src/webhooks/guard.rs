//! The guard against server-side request forgery: a webhook URL names a public HTTP(S)
//! destination, never this service's own network. Checked at registration, and again at every
//! connection by the client's resolver, which hands the connector only the addresses it
//! allows, so a name that resolves to a public address at registration and to a private one
//! later (DNS rebinding) is refused too.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a destination is refused, for the client (at registration) or the delivery record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether no delivery may go to `ip`: loopback, private, link-local (cloud metadata
/// services live there), shared, unspecified, multicast, documentation and reserved ranges,
/// IPv4 mapped into IPv6 included.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                // Shared address space (carrier-grade NAT), benchmarking, reserved.
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_unique_local()
                || ip.is_unicast_link_local()
                // NAT64 reaches IPv4 addresses, 6to4 and documentation are not destinations.
                || (first == 0x64 && ip.segments()[1] == 0xff9b)
                || first == 0x2002
                || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        }
    }
}

/// Parses a destination: an absolute `http` or `https` URL with a host and no credentials.
/// A host written as an address is checked here, since no resolver sees it.
pub fn parse(url: &str, allow_private: bool) -> Result<Url, Refused> {
    let refused = |why: &str| Refused(why.to_owned());
    let parsed = Url::parse(url).map_err(|err| Refused(format!("not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refused("must be an http or https URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refused(
            "must not carry credentials; the signature authenticates deliveries",
        ));
    }
    let Some(host) = parsed.host() else {
        return Err(refused("must name a host"));
    };
    let literal = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    if !allow_private && literal.is_some_and(is_forbidden) {
        return Err(refused("is a loopback, private or otherwise internal address"));
    }
    Ok(parsed)
}

/// Resolves `url`'s host and refuses it when any of its addresses is forbidden; a host that
/// does not resolve is refused too, as nothing could be delivered to it.
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), Refused> {
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    if allow_private {
        return Ok(());
    }
    let addresses = lookup(name)
        .await
        .map_err(|err| Refused(format!("{name} does not resolve: {err}")))?;
    if addresses.iter().any(|address| is_forbidden(address.ip())) {
        return Err(Refused(format!(
            "{name} resolves to a loopback, private or otherwise internal address"
        )));
    }
    Ok(())
}

async fn lookup(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((name, 0)).await?.collect())
}

/// The outbound client's resolver: the system's, with forbidden addresses taken out.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let name = name.as_str();
            let mut addresses = lookup(name).await?;
            if !allow_private {
                addresses.retain(|address| !is_forbidden(address.ip()));
                if addresses.is_empty() {
                    return Err(Refused(format!("{name} resolves only to internal addresses")).into());
                }
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_are_not() {
        for forbidden in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_forbidden(forbidden.parse().expect("address")), "{forbidden}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_forbidden(public.parse().expect("address")), "{public}");
        }
    }

    #[test]
    fn a_destination_is_an_http_url_with_a_public_host_and_no_credentials() {
        assert!(parse("https://hooks.example.com/in?x=1", false).is_ok());
        for (url, why) in [
            ("ftp://example.com/", "must be an http or https URL"),
            ("https://user:pass@example.com/", "must not carry credentials"),
            ("https://127.0.0.1/", "is a loopback, private"),
            ("http://[::1]:8080/", "is a loopback, private"),
            ("http://169.254.169.254/latest/meta-data", "is a loopback, private"),
            ("example.com/hook", "not a URL"),
        ] {
            let refused = parse(url, false).expect_err(url);
            assert!(refused.0.starts_with(why), "{url}: {refused}");
        }
        assert!(parse("http://127.0.0.1:9000/", true).is_ok(), "allowed in development");
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        let url = parse("http://localhost:9000/hook", false).expect("parses: a name");

        let refused = check_resolved(&url, false).await.expect_err("refused");
        assert_eq!(
            refused.0,
            "localhost resolves to a loopback, private or otherwise internal address"
        );
        assert!(check_resolved(&url, true).await.is_ok());
    }
}
