//! Hub addresses: `quic://host:port`, the one form agents and hubs name a hub by.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A hub's address: host (a name, an IPv4 address or an IPv6 address) and UDP port. Parsed
/// from `quic://host:port` (the scheme may be left out; IPv6 hosts go in brackets, as in
/// `quic://[::1]:4433`; one trailing `/` is tolerated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubUrl {
    host: String,
    port: u16,
}

/// Why a string is not a hub address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a hub address of the form quic://host:port")]
pub struct HubUrlError {
    /// The rejected input, cut to 128 characters.
    pub url: String,
}

impl HubUrl {
    /// Parses `quic://host:port`.
    pub fn parse(url: &str) -> Result<Self, HubUrlError> {
        let bad = || HubUrlError {
            url: url.chars().take(128).collect(),
        };
        let rest = url.strip_prefix("quic://").unwrap_or(url);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains("://") || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']').ok_or_else(bad)?;
                // Brackets hold an IPv6 address and nothing else.
                match inner.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => inner,
                    _ => return Err(bad()),
                }
            }
            // An unbracketed host with a colon would be an IPv6 address without brackets,
            // whose port cannot be told apart.
            None if host.contains(':') || host.contains(']') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The host, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is an IP address rather than a name.
    pub fn host_is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

impl FromStr for HubUrl {
    type Err = HubUrlError;
    fn from_str(s: &str) -> Result<Self, HubUrlError> {
        Self::parse(s)
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "quic://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "quic://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_addresses() {
        for (url, host, port) in [
            ("quic://127.0.0.1:4433", "127.0.0.1", 4433),
            (
                "quic://hub.eu.example.com:4433/",
                "hub.eu.example.com",
                4433,
            ),
            ("quic://[::1]:1", "::1", 1),
            ("localhost:9", "localhost", 9),
        ] {
            let parsed = HubUrl::parse(url).expect(url);
            assert_eq!((parsed.host(), parsed.port()), (host, port), "{url}");
            assert_eq!(HubUrl::parse(&parsed.to_string()), Ok(parsed), "{url}");
        }
        assert!(HubUrl::parse("quic://[::1]:1").expect("v6").host_is_ip());
        assert!(!HubUrl::parse("quic://hub:1").expect("name").host_is_ip());
    }

    #[test]
    fn refuses_what_is_not_host_and_port() {
        for url in [
            "",
            "quic://",
            "quic://:4433",
            "quic://host",
            "quic://host:",
            "quic://host:65536",
            "quic://host:-1",
            "quic://::1:4433",
            "quic://[::1:4433",
            "quic://[hub]:4433",
            "quic://host:4433/path",
            "https://host:4433",
            "quic://ho st:1",
        ] {
            assert!(HubUrl::parse(url).is_err(), "{url:?} must be refused");
        }
    }
}
