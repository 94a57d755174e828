//! API versioning, in front of the router: `/vX.Y/...` and unversioned paths reach the same routes, the
//! version travels in the request's extensions, and every response carries dockerd's common headers.

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub const API_VERSION: ApiVersion = ApiVersion(1, 45);
pub const MIN_API_VERSION: ApiVersion = ApiVersion(1, 24);

/// The API version a request asked for (ours when its path had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= ApiVersion(major, minor)
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Splits `/v1.45/images/json` into ("1.45", "/images/json"). Only `v` + digits and dots count as a
/// version segment, as in dockerd's router.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let looks = !ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    looks.then_some((ver, if tail.is_empty() { "/" } else { tail }))
}

fn check(raw: &str) -> Result<ApiVersion, ApiError> {
    let v = ApiVersion::parse(raw).ok_or_else(|| ApiError::bad_request(format!("invalid API version {raw:?}")))?;
    if v > API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if v < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(v)
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    log::debug!("Calling {} {}", req.method(), req.uri());
    let mut version = API_VERSION;
    if let Some((raw, tail)) = split_version(req.uri().path()) {
        match check(raw) {
            Ok(v) => version = v,
            Err(e) => return with_common_headers(e.into_response()),
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = pq.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req.extensions_mut().insert(version);
    with_common_headers(next.run(req).await)
}

fn with_common_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Server", HeaderValue::from_static(concat!("balena-engine/", env!("CARGO_PKG_VERSION"), " (linux)")));
    if let Ok(v) = HeaderValue::from_str(&API_VERSION.to_string()) {
        h.insert("Api-Version", v);
    }
    h.insert("Ostype", HeaderValue::from_static("linux"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_checks_versions() {
        assert_eq!(split_version("/v1.45/images/json"), Some(("1.45", "/images/json")));
        assert_eq!(split_version("/v1.41"), Some(("1.41", "/")));
        assert_eq!(split_version("/version"), None);
        assert_eq!(split_version("/images/json"), None);
        assert!(check("1.45").is_ok() && check("1.24").is_ok());
        assert_eq!(check("1.99").unwrap_err().message, "client version 1.99 is too new. Maximum supported API version is 1.45");
        assert!(check("1.12").unwrap_err().message.contains("too old"));
        assert_eq!(API_VERSION.to_string(), "1.45");
    }
}
