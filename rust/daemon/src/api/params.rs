//! Query parameters the way dockerd reads them: repeatable keys (`names=a&names=b`) and its loose booleans.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use super::filters::Filters;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The first value of `key`; empty values count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// dockerd's `BoolValue`: absent, "", "0", "no", "false" and "none" are false, anything else true.
    pub fn flag(&self, key: &str) -> bool {
        let v = self.get(key).unwrap_or("").trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
    }

    /// `filters=` as JSON, checked against the keys the endpoint knows.
    pub fn filters(&self, known: &[&str]) -> Result<Filters, ApiError> {
        let f = Filters::parse(self.get("filters"))?;
        f.validate(known)?;
        Ok(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_dockerd() {
        let p = Params::parse(Some("names=a%3A1&names=b&quiet=1&force=false&empty="));
        assert_eq!(p.all("names"), ["a:1", "b"]);
        assert!(p.flag("quiet"));
        assert!(!p.flag("force"));
        assert!(!p.flag("missing"));
        assert_eq!(p.get("empty"), None);
    }
}
