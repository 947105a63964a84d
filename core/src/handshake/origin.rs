//! Which web pages may open a WebSocket to a server: the `Origin` header a browser sends
//! with every handshake. A browser also sends the user's cookies for the server's host
//! whatever page runs the script, so without this check any site can act as the user
//! (cross-site WebSocket hijacking). Clients that are not browsers send no `Origin`.

use super::server::Request;

/// An origin policy, checked before the application sees the request (a refusal is 403).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// The server's own pages: an `Origin` whose host and port are the request's `Host`
    /// (default ports as written or left out). Requests without `Origin` pass. The
    /// default.
    #[default]
    SameHost,
    /// The server's own pages as [`SameHost`](Self::SameHost), and these origins
    /// exactly (`https://app.example.com`, `http://localhost:3000`, or `null` for file
    /// pages), compared without regard to case; requests without `Origin` pass.
    SameHostAnd(Vec<String>),
    /// Every origin: for a public service that relies on no cookie or other credential
    /// the browser adds by itself.
    Any,
}

impl OriginPolicy {
    /// True when `request` may be upgraded under this policy.
    pub fn allows(&self, request: &Request) -> bool {
        let Some(origin) = request.headers().get("origin") else {
            return true;
        };
        let host = request.headers().get("host").unwrap_or_default();
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::SameHost => same_host(origin, host),
            OriginPolicy::SameHostAnd(allowed) => {
                same_host(origin, host) || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// `origin` (`scheme://host[:port]`) names the authority `host` (`host[:port]`).
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        // `null` (a file page, a sandboxed frame) or garbage: not this host.
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return false,
    };
    let strip = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    !host.is_empty() && strip(authority) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Headers;

    fn request(origin: Option<&str>, host: &str) -> Request {
        let mut headers = Headers::new();
        headers.push("Host", host);
        if let Some(origin) = origin {
            headers.push("Origin", origin);
        }
        Request::new("GET", "/", headers)
    }

    #[test]
    fn same_host_allows_the_servers_own_pages_and_non_browsers_only() {
        let policy = OriginPolicy::default();
        let allows = |origin, host| policy.allows(&request(origin, host));
        assert!(
            allows(None, "chat.example:8080"),
            "no Origin: not a browser"
        );
        assert!(allows(
            Some("http://chat.example:8080"),
            "chat.example:8080"
        ));
        assert!(allows(Some("HTTPS://Chat.Example"), "chat.example"));
        assert!(allows(Some("https://chat.example:443"), "chat.example"));
        assert!(allows(Some("http://chat.example"), "chat.example:80"));
        assert!(allows(Some("http://[::1]:9001"), "[::1]:9001"));
        assert!(!allows(Some("https://evil.example"), "chat.example"));
        assert!(!allows(
            Some("http://chat.example:8081"),
            "chat.example:8080"
        ));
        assert!(!allows(Some("https://chat.example"), "chat.example:80"));
        assert!(!allows(
            Some("http://chat.example.evil.example"),
            "chat.example"
        ));
        assert!(!allows(Some("null"), "chat.example"));
        assert!(!allows(Some("http://chat.example"), ""));
    }

    #[test]
    fn a_list_is_exact_and_any_is_any() {
        let list = OriginPolicy::SameHostAnd(vec!["https://app.example".into(), "null".into()]);
        assert!(list.allows(&request(Some("https://APP.example"), "api.example")));
        assert!(list.allows(&request(Some("null"), "api.example")));
        assert!(list.allows(&request(None, "api.example")));
        assert!(!list.allows(&request(Some("https://app.example:8443"), "api.example")));
        assert!(list.allows(&request(Some("https://api.example"), "api.example")));
        assert!(!list.allows(&request(Some("https://evil.example"), "api.example")));
        assert!(OriginPolicy::Any.allows(&request(Some("https://evil.example"), "api.example")));
    }
}
