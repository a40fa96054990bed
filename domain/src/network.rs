//! Network access control: a tenant's endpoint policy (SWR enterprise
//! `ShowInstanceEndpointPolicy`/`UpdateInstanceEndpointPolicy`/
//! `CreateInstanceEndpointPolicy`, huaweicloudsdkswr v2), and which address
//! a request comes from.
//!
//! A tenant's policy says whether its registry is reachable from outside
//! the operator's internal networks (`status`, SWR's public access) and,
//! if so, from which addresses (`ip_list`, SWR's white list; empty: any).
//! Addresses in the internal networks (the `internal_networks` setting,
//! none by default; what SWR reaches over VPC endpoints) are always let
//! in. The policy binds everything done as one of the tenant's
//! identities: `/v2/` (Basic and Bearer), docker login, the management
//! APIs and the console.

use crate::swr::SwrError;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// `iam/endpoint-policy/<tenant>` → [`EndpointPolicy`] (absent: the
/// default, open to any address).
pub fn policy_key(tenant: &str) -> String {
    format!("iam/endpoint-policy/{tenant}")
}

/// The setting naming the internal networks (CIDRs, comma-separated).
pub const INTERNAL_NETWORKS: &str = "internal_networks";
/// The setting naming the proxies whose `X-Forwarded-For` is believed
/// (CIDRs, comma-separated; none by default).
pub const TRUSTED_PROXIES: &str = "trusted_proxies";

/// The most entries an allow list holds.
pub const MAX_ENTRIES: usize = 200;

/// One allow-list entry (SWR's `IpInfo`): an address or a CIDR block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpInfo {
    pub ip: String,
    #[serde(default)]
    pub description: String,
}

/// A tenant's endpoint policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPolicy {
    /// Reachable from outside the internal networks (SWR `Enable`).
    pub enabled: bool,
    /// The outside addresses let in; empty: any.
    #[serde(default)]
    pub ip_list: Vec<IpInfo>,
}

impl Default for EndpointPolicy {
    fn default() -> Self {
        EndpointPolicy {
            enabled: true,
            ip_list: Vec::new(),
        }
    }
}

impl EndpointPolicy {
    /// Whether the policy lets anyone in (so no address need be worked out).
    pub fn open(&self) -> bool {
        self.enabled && self.ip_list.is_empty()
    }

    /// Whether a request from `client` is let in, given the internal
    /// networks. An unknown address is let in only by an open policy.
    pub fn allows(&self, client: Option<IpAddr>, internal: &[IpNet]) -> bool {
        if self.open() {
            return true;
        }
        let Some(ip) = client.map(canonical) else {
            return false;
        };
        if internal.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        self.enabled
            && self
                .ip_list
                .iter()
                .filter_map(|e| parse_net(&e.ip).ok())
                .any(|n| n.contains(&ip))
    }

    /// SWR's view: `{"status": "Enable"|"Disable", "ip_list": [IpInfo]}`.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "status": if self.enabled { "Enable" } else { "Disable" },
            "ip_list": self.ip_list,
        })
    }
}

/// Checks an allow list (SWR `UpdateWhiteListRequestBody.ip_list`): every
/// entry an IPv4/IPv6 address or CIDR block, at most [`MAX_ENTRIES`], and
/// descriptions of at most 128 characters. Entries are kept as given,
/// canonicalized (`10.0.0.1/8` → `10.0.0.0/8`), duplicates dropped.
pub fn validate_list(list: Vec<IpInfo>) -> Result<Vec<IpInfo>, SwrError> {
    if list.len() > MAX_ENTRIES {
        return Err(SwrError::bad_request(format!(
            "an allow list holds at most {MAX_ENTRIES} entries"
        )));
    }
    let mut out: Vec<IpInfo> = Vec::with_capacity(list.len());
    for e in list {
        let net = parse_net(&e.ip).map_err(SwrError::bad_request)?;
        if e.description.chars().count() > 128 {
            return Err(SwrError::bad_request(format!(
                "the description of {} is longer than 128 characters",
                e.ip
            )));
        }
        if e.description.chars().any(|c| {
            c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        }) {
            return Err(SwrError::bad_request(format!(
                "the description of {} holds control or direction characters",
                e.ip
            )));
        }
        // IPv4-mapped IPv6 (`::ffff:192.0.2.7`) as the IPv4 it is, as
        // client addresses are.
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::V4(
                    ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix of at most 32"),
                ),
                None => net,
            },
            _ => net,
        };
        let ip = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.trunc().to_string()
        };
        if !out.iter().any(|o| o.ip == ip) {
            out.push(IpInfo {
                ip,
                description: e.description,
            });
        }
    }
    Ok(out)
}

/// An address (`192.0.2.7`, `2001:db8::1`) or block (`192.0.2.0/24`).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
}

/// A comma-separated list of blocks (a setting); errors name the entry.
pub fn parse_nets(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_net)
        .collect()
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`, what a dual-stack
/// socket reports) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer (`spin-client-addr`, `ip:port` or an
/// address), or, when the peer is a trusted proxy and `forwarded` (every
/// `X-Forwarded-For` line, joined with `,`) is given, the nearest address
/// in it that is not a trusted proxy (each proxy appends the address it
/// heard from, so only the right-hand part is believed). A hop that reads
/// as no address (`unknown`, an obfuscated name) leaves the client unknown
/// (`None`), which only an open policy lets in. Hops may carry ports
/// (`192.0.2.1:443`, `[2001:db8::1]:443`).
pub fn client_ip(peer: &str, forwarded: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = address(peer)?;
    let trusted_ip = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !trusted_ip(&peer) {
        return Some(peer);
    }
    let Some(forwarded) = forwarded.filter(|f| !f.trim().is_empty()) else {
        return Some(peer);
    };
    for hop in forwarded.rsplit(',') {
        let ip = address(hop.trim())?;
        if !trusted_ip(&ip) {
            return Some(ip);
        }
    }
    // Every hop a trusted proxy: the farthest one is the client.
    forwarded.split(',').next().and_then(|h| address(h.trim()))
}

/// An address as peers and forwarding headers write it: bare, with a
/// port, or bracketed IPv6 with a port; IPv4-mapped IPv6 as IPv4.
fn address(s: &str) -> Option<IpAddr> {
    s.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| {
            s.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
        })
        .ok()
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &str) -> Vec<IpNet> {
        parse_nets(s).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn list(entries: &[&str]) -> Vec<IpInfo> {
        entries
            .iter()
            .map(|e| IpInfo {
                ip: e.to_string(),
                description: String::new(),
            })
            .collect()
    }

    #[test]
    fn policies_let_in_what_they_list() {
        let open = EndpointPolicy::default();
        assert!(open.allows(None, &[]));
        let listed = EndpointPolicy {
            enabled: true,
            ip_list: validate_list(list(&["192.0.2.0/24", "2001:db8::1"])).unwrap(),
        };
        assert!(listed.allows(ip("192.0.2.9"), &[]));
        assert!(listed.allows(ip("::ffff:192.0.2.9"), &[]));
        assert!(listed.allows(ip("2001:db8::1"), &[]));
        assert!(!listed.allows(ip("198.51.100.1"), &[]));
        assert!(!listed.allows(None, &[]));
        assert!(listed.allows(ip("10.1.2.3"), &nets("10.0.0.0/8")));
        let closed = EndpointPolicy {
            enabled: false,
            ip_list: listed.ip_list.clone(),
        };
        assert!(!closed.allows(ip("192.0.2.9"), &[]));
        assert!(closed.allows(ip("10.1.2.3"), &nets("10.0.0.0/8")));
    }

    #[test]
    fn lists_are_checked_and_canonical() {
        let got = validate_list(list(&[
            "10.9.8.7/8",
            "10.0.0.0/8",
            " 127.0.0.2 ",
            "::ffff:127.0.0.3",
        ]))
        .unwrap();
        assert_eq!(
            got.iter().map(|e| e.ip.as_str()).collect::<Vec<_>>(),
            ["10.0.0.0/8", "127.0.0.2", "127.0.0.3"]
        );
        let mut spoof = list(&["10.0.0.1"]);
        spoof[0].description = "office\u{202E}".into();
        assert!(validate_list(spoof).is_err());
        for bad in ["10.0.0.0/33", "example.com", "", "1.2.3"] {
            let e = validate_list(list(&[bad])).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
        assert!(validate_list(list(&["10.0.0.1"; MAX_ENTRIES + 1])).is_err());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxies = nets("127.0.0.1/32, 10.0.0.0/8");
        // Not from a proxy: the header is ignored.
        assert_eq!(
            client_ip("192.0.2.1:5555", Some("203.0.113.9"), &proxies),
            ip("192.0.2.1")
        );
        // From a proxy: the nearest hop that is not one.
        assert_eq!(
            client_ip(
                "127.0.0.1:5555",
                Some("6.6.6.6, 203.0.113.9, 10.1.1.1"),
                &proxies
            ),
            ip("203.0.113.9")
        );
        // A proxy without the header is the client.
        assert_eq!(client_ip("127.0.0.1:1", None, &proxies), ip("127.0.0.1"));
        // Without trusted proxies nothing forwarded counts.
        assert_eq!(
            client_ip("127.0.0.1:1", Some("203.0.113.9"), &[]),
            ip("127.0.0.1")
        );
        assert_eq!(client_ip("[::1]:80", None, &[]), ip("::1"));
        assert_eq!(client_ip("junk", None, &[]), None);
        // An unreadable hop leaves the client unknown.
        assert_eq!(
            client_ip("127.0.0.1:1", Some("203.0.113.9, bogus"), &proxies),
            None
        );
        // Hops with ports, as some load balancers write them.
        assert_eq!(
            client_ip("127.0.0.1:1", Some("203.0.113.9:5555"), &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip("127.0.0.1:1", Some("[2001:db8::9]:443"), &proxies),
            ip("2001:db8::9")
        );
        // Every hop trusted: the farthest.
        assert_eq!(
            client_ip("127.0.0.1:1", Some("10.0.0.2, 10.0.0.3"), &proxies),
            ip("10.0.0.2")
        );
    }
}
