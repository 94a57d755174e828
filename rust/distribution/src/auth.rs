//! Registry credentials and the authentication handshake: `X-Registry-Auth` as API clients send it,
//! `WWW-Authenticate` challenges (Basic, Bearer), and the token server's answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::error::{Error, Result};

/// What a client may authenticate with. The balena supervisor sends `registrytoken` (a ready bearer token,
/// for delta images); the docker CLI sends `username`/`password` or an `identitytoken`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
    pub registry_token: Option<String>,
    pub server_address: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("identity_token", &self.identity_token.as_ref().map(|_| "***"))
            .field("registry_token", &self.registry_token.as_ref().map(|_| "***"))
            .field("server_address", &self.server_address)
            .finish()
    }
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.password.is_none()
            && self.identity_token.is_none()
            && self.registry_token.is_none()
    }

    /// Decodes an `X-Registry-Auth` header: base64 (URL-safe or standard, padded or not) of a JSON object
    /// whose keys are matched without regard to case (`username`, `Username`, `serveraddress`,
    /// `serverAddress`, …); `auth` (base64 of `user:password`) is understood too. An empty header or `{}`
    /// means anonymous.
    pub fn from_x_registry_auth(header: &str) -> Result<Credentials> {
        let header = header.trim();
        if header.is_empty() {
            return Ok(Credentials::default());
        }
        let bytes = decode_b64(header).ok_or_else(|| Error::Config("X-Registry-Auth: not base64".into()))?;
        Self::from_json(&bytes)
    }

    /// The JSON object itself (`/auth` bodies, `--data-root` mode's config).
    pub fn from_json(bytes: &[u8]) -> Result<Credentials> {
        let map: HashMap<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| Error::Config(format!("X-Registry-Auth: {e}")))?;
        let get = |k: &str| -> Option<String> {
            map.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let mut c = Credentials {
            username: get("username"),
            password: get("password"),
            identity_token: get("identitytoken"),
            registry_token: get("registrytoken"),
            server_address: get("serveraddress"),
        };
        if c.username.is_none() {
            if let Some(auth) = get("auth") {
                let pair = decode_b64(&auth).and_then(|b| String::from_utf8(b).ok());
                if let Some((u, p)) = pair.as_deref().and_then(|s| s.split_once(':')) {
                    c.username = Some(u.to_owned());
                    c.password = Some(p.to_owned());
                }
            }
        }
        Ok(c)
    }

    /// `user:password` for a Basic header, if there are both.
    pub fn basic(&self) -> Option<String> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))),
            _ => None,
        }
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [URL_SAFE, URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD].iter().find_map(|e| e.decode(s).ok())
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let params = parse_params(rest);
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            });
        }
        None
    }
}

/// `key="value", key2=value2` (quoted values may hold commas and escaped quotes).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_owned();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
    /// Renewed this long before it lapses (a quarter of its lifetime, at most 10 s).
    pub margin: Duration,
}

impl Token {
    pub fn new(value: String, lifetime: Duration) -> Token {
        Token { value, expires: Instant::now() + lifetime, margin: (lifetime / 4).min(Duration::from_secs(10)) }
    }

    /// Fresh with some margin, so a long request does not start on a token about to lapse.
    pub fn is_fresh(&self) -> bool {
        Instant::now() + self.margin < self.expires
    }
}

/// The token server's JSON (`token` or OAuth2's `access_token`; `expires_in` defaults to 60 s).
pub fn parse_token_response(body: &[u8]) -> Result<Token> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| Error::Unauthorized(format!("token server answer: {e}")))?;
    let value = a
        .token
        .or(a.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Unauthorized("token server sent no token".into()))?;
    let secs = a.expires_in.unwrap_or(60).clamp(10, 24 * 3600);
    Ok(Token::new(value, Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    #[test]
    fn x_registry_auth_any_case_any_base64() {
        let c = Credentials::from_x_registry_auth(
            &URL_SAFE.encode(r#"{"username":"u","password":"p?>","serveraddress":"r:5000"}"#),
        )
        .unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref(), c.server_address.as_deref()),
            (Some("u"), Some("p?>"), Some("r:5000"))
        );
        let c = Credentials::from_x_registry_auth(
            &STANDARD.encode(r#"{"Username":"U","Password":"P","serverAddress":"x"}"#),
        )
        .unwrap();
        assert_eq!(c.username.as_deref(), Some("U"));
        let c = Credentials::from_x_registry_auth(&STANDARD.encode(r#"{"registryToken":"tok"}"#)).unwrap();
        assert_eq!(c.registry_token.as_deref(), Some("tok"));
        let c = Credentials::from_x_registry_auth(
            &STANDARD.encode(format!(r#"{{"auth":"{}"}}"#, STANDARD.encode("a:b:c"))),
        )
        .unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("a"), Some("b:c")));
        assert!(Credentials::from_x_registry_auth("e30=").unwrap().is_empty());
        assert!(Credentials::from_x_registry_auth("").unwrap().is_empty());
        assert!(Credentials::from_x_registry_auth("!!!").is_err());
        assert!(
            !format!("{:?}", Credentials { password: Some("secret".into()), ..Default::default() }).contains("secret")
        );
    }

    #[test]
    fn challenges() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into())
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn tokens() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert!(t.is_fresh());
        // A short-lived token is still used for most of its life, not renewed before every request.
        assert!(parse_token_response(br#"{"token":"s","expires_in":5}"#).unwrap().is_fresh());
        assert_eq!(parse_token_response(br#"{"access_token":"x"}"#).unwrap().value, "x");
        assert!(parse_token_response(br#"{}"#).is_err());
    }
}
