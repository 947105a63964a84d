//! `ws://` and `wss://` URLs (RFC 6455 section 3), parsed strictly: what is accepted here
//! can be connected to, and everything else gets a specific error.

use std::fmt;
use std::net::Ipv6Addr;

/// A parsed WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://` (TLS).
    pub secure: bool,
    /// The host: a name, an IPv4 literal, or an IPv6 literal without brackets.
    pub host: String,
    /// The port (default 80 for `ws`, 443 for `wss`).
    pub port: u16,
    /// Path and query, as sent in the request line (`/` when the URL has no path).
    pub resource: String,
}

/// Why a URL cannot be connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not `ws` or `wss`.
    UnsupportedScheme(String),
    /// Anything else wrong with it; the text says what.
    Invalid(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::UnsupportedScheme(scheme) => {
                write!(f, "unsupported scheme {scheme:?}: use ws:// or wss://")
            }
            UrlError::Invalid(why) => write!(f, "invalid URL: {why}"),
        }
    }
}

impl std::error::Error for UrlError {}

impl WsUrl {
    /// Parses `ws[s]://host[:port][/path][?query]`. Fragments and credentials are refused
    /// (RFC 6455 section 3 forbids fragments; credentials would leak in the request).
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let invalid = |why: &str| Err(UrlError::Invalid(why.to_owned()));
        let Some((scheme, rest)) = url.split_once("://") else {
            return invalid("expected ws://host/path");
        };
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(UrlError::UnsupportedScheme(scheme.to_owned())),
        };
        if rest.contains('#') {
            return invalid("a WebSocket URL cannot have a fragment (#)");
        }
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return invalid("spaces and control characters must be percent-encoded");
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return invalid("credentials (user@) in a WebSocket URL are not supported");
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((literal, after)) = bracketed.split_once(']') else {
                return invalid("unclosed [ in an IPv6 host");
            };
            if literal.parse::<Ipv6Addr>().is_err() {
                return invalid("not an IPv6 address between [ and ]");
            }
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return invalid("unexpected text after the IPv6 host"),
                },
            };
            (literal, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return invalid("missing host");
        }
        if !authority.starts_with('[') && host.contains(':') {
            return invalid("an IPv6 host must be in brackets: ws://[::1]:9001/");
        }
        let port = match port {
            None => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
                return invalid("the port must be a number from 1 to 65535")
            }
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return invalid("the port must be a number from 1 to 65535"),
            },
        };
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            resource,
        })
    }

    /// The `Host` header value: the port only when not the scheme's default, IPv6 in
    /// brackets.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (bool, String, u16, String) {
        let u = WsUrl::parse(url).unwrap();
        (u.secure, u.host, u.port, u.resource)
    }

    #[test]
    fn accepts_the_usual_forms() {
        assert_eq!(
            ok("ws://example.com"),
            (false, "example.com".into(), 80, "/".into())
        );
        assert_eq!(
            ok("WSS://example.com:8443/chat?room=1&x=%20"),
            (
                true,
                "example.com".into(),
                8443,
                "/chat?room=1&x=%20".into()
            )
        );
        assert_eq!(ok("ws://h?x=1"), (false, "h".into(), 80, "/?x=1".into()));
        assert_eq!(
            ok("ws://[::1]:9001/"),
            (false, "::1".into(), 9001, "/".into())
        );
        assert_eq!(ok("ws://[::1]"), (false, "::1".into(), 80, "/".into()));
        assert_eq!(
            ok("ws://127.0.0.1:1/a/b"),
            (false, "127.0.0.1".into(), 1, "/a/b".into())
        );
    }

    #[test]
    fn host_header_keeps_only_a_non_default_port() {
        let host = |url: &str| WsUrl::parse(url).unwrap().host_header();
        assert_eq!(host("ws://h/"), "h");
        assert_eq!(host("ws://h:80/"), "h");
        assert_eq!(host("wss://h:443/"), "h");
        assert_eq!(host("ws://h:443/"), "h:443");
        assert_eq!(host("ws://[::1]:9001/"), "[::1]:9001");
    }

    #[test]
    fn refuses_with_a_reason() {
        assert_eq!(
            WsUrl::parse("http://h/"),
            Err(UrlError::UnsupportedScheme("http".into()))
        );
        for bad in [
            "h:80/",
            "ws://",
            "ws://:80/",
            "ws://h:0/",
            "ws://h:65536/",
            "ws://h:x/",
            "ws://h:+80/",
            "ws://h/#frag",
            "ws://user:pw@h/",
            "ws://h/a b",
            "ws://[::1/",
            "ws://[zz]:1/",
            "ws://::1:80/",
            "ws://[::1]x/",
        ] {
            assert!(
                matches!(WsUrl::parse(bad), Err(UrlError::Invalid(_))),
                "{bad} accepted"
            );
        }
    }
}
