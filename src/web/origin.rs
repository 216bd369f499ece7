//! Which web pages may open a chat connection: the `Origin` check on
//! `/ws`.
//!
//! A browser sends the `Origin` of the page that opens a WebSocket, and
//! sends the visitor's cookies and credentials with it whatever that page
//! is; without this check any site a chat user visits could open a chat
//! connection from the visitor's browser. Allowed are the server's own
//! origin (the scheme it serves and the `Host` the browser asked for) and
//! those given with `--allowed-origin`. A request without `Origin` is not
//! from a browser page (browsers always send it on a WebSocket handshake)
//! and is let in: `websocat` or a test client has no visitor to protect.
//!
//! Pure: tested on strings, without sockets.

/// Why an `--allowed-origin` is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not `http://` or `https://`.
    #[error("an origin starts with http:// or https://, as in https://chat.example.com")]
    Scheme,
    /// Nothing after the scheme.
    #[error("an origin names a host, as in https://chat.example.com")]
    NoHost,
    /// A path, query or fragment after the host.
    #[error("an origin is a scheme, a host and a port only, with no path")]
    Path,
}

/// `origin` in the one spelling browsers send: lower case, no trailing
/// slash, no default port (`:80` for http, `:443` for https).
pub fn normalize_origin(origin: &str) -> Result<String, OriginError> {
    let lower = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or(OriginError::Scheme)?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(OriginError::Scheme),
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.contains(['/', '?', '#']) {
        return Err(OriginError::Path);
    }
    let host = host.strip_suffix(default_port).unwrap_or(host);
    if host.is_empty() || host.starts_with(':') {
        return Err(OriginError::NoHost);
    }
    Ok(format!("{scheme}://{host}"))
}

/// The origins allowed to open `/ws`, besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Normalized (see [`normalize_origin`]).
    allowed: Vec<String>,
}

impl Origins {
    /// Allows the server's own origin and `allowed` (normalized already,
    /// as [`crate::Config::allowed_origins`] is).
    pub fn new(allowed: Vec<String>) -> Self {
        Origins { allowed }
    }

    /// Whether a handshake with this `Origin` header may open a chat
    /// connection, on a server reached at `host` (the `Host` header) over
    /// HTTPS if `secure`.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>, secure: bool) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        // "null" (a sandboxed frame, a file: page) is never normalized into
        // anything allowed.
        let Ok(origin) = normalize_origin(origin) else {
            return false;
        };
        let scheme = if secure { "https" } else { "http" };
        let own = host.and_then(|host| normalize_origin(&format!("{scheme}://{host}")).ok());
        own.as_deref() == Some(origin.as_str()) || self.allowed.contains(&origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        let n = |s| normalize_origin(s);
        assert_eq!(
            n("HTTPS://Chat.Example.com/"),
            Ok("https://chat.example.com".into())
        );
        assert_eq!(n("http://x:80"), Ok("http://x".into()));
        assert_eq!(n("https://x:443"), Ok("https://x".into()));
        assert_eq!(n("http://x:443"), Ok("http://x:443".into()));
        assert_eq!(n("http://[::1]:8081"), Ok("http://[::1]:8081".into()));
        assert_eq!(n("chat.example.com"), Err(OriginError::Scheme));
        assert_eq!(n("ftp://x"), Err(OriginError::Scheme));
        assert_eq!(n("https://"), Err(OriginError::NoHost));
        assert_eq!(n("https://x/chat"), Err(OriginError::Path));
        assert_eq!(n("null"), Err(OriginError::Scheme));
    }

    #[test]
    fn the_own_origin_and_the_allowed_ones_pass_others_do_not() {
        let origins = Origins::new(vec!["https://friend.example".into()]);
        let host = Some("127.0.0.1:8081");
        assert!(origins.allows(Some("http://127.0.0.1:8081"), host, false));
        assert!(origins.allows(None, host, false), "not a browser");
        assert!(origins.allows(Some("https://friend.example"), host, false));
        assert!(!origins.allows(Some("https://evil.example"), host, false));
        assert!(!origins.allows(Some("null"), host, false));
        // Same host, other scheme or port: another origin.
        assert!(!origins.allows(Some("https://127.0.0.1:8081"), host, false));
        assert!(!origins.allows(Some("http://127.0.0.1:9999"), host, false));
        assert!(origins.allows(Some("https://chat.example"), Some("chat.example"), true));
        assert!(origins.allows(Some("https://chat.example"), Some("chat.example:443"), true));
        assert!(!origins.allows(Some("http://127.0.0.1:8081"), None, false));
    }
}
