//! The `filters` query parameter: JSON, either `{"key":["v1","v2"]}` or the form the docker CLI sends,
//! `{"key":{"v1":true}}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::ApiError;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

#[derive(Deserialize)]
#[serde(untagged)]
enum Values {
    List(Vec<String>),
    Set(BTreeMap<String, bool>),
}

impl Filters {
    pub fn parse(raw: Option<&str>) -> Result<Filters, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(Filters::default()) };
        let map: BTreeMap<String, Values> =
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let map = map
            .into_iter()
            .map(|(k, v)| {
                let vals = match v {
                    Values::List(l) => l,
                    Values::Set(s) => s.into_iter().filter(|(_, on)| *on).map(|(v, _)| v).collect(),
                };
                (k, vals)
            })
            .collect();
        Ok(Filters(map))
    }

    pub fn validate(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values given for `key` (empty when the filter is absent).
    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, key: &str) -> bool {
        !self.get(key).is_empty()
    }

    /// A boolean filter (`dangling=true`); `None` when absent.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        let vals = self.get(key);
        let mut out = None;
        for v in vals {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(ApiError::bad_request(format!("invalid filter '{key}={v}'"))),
            };
            if out.is_some_and(|o| o != b) {
                return Err(ApiError::bad_request(format!("invalid filter '{key}': conflicting values")));
            }
            out = Some(b);
        }
        Ok(out)
    }

    /// `label=key` or `label=key=value` against a label map: all given must match.
    pub fn labels_match(&self, labels: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.get("label").iter().all(|want| match want.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(|x| x.as_str()) == Some(v),
            None => labels.contains_key(want.as_str()),
        })
    }
}

/// Go's `path.Match`: `*` (any run without '/'), `?`, and `[...]` classes with ranges and `^` negation.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        let mut i = 1;
        let negate = p.get(1) == Some(&'^');
        if negate {
            i += 1;
        }
        let mut hit = false;
        let start = i;
        while i < p.len() && (p[i] != ']' || i == start) {
            let lo = p[i];
            if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&h| h != ']') {
                hit |= lo <= c && c <= p[i + 2];
                i += 3;
            } else {
                hit |= lo == c;
                i += 1;
            }
        }
        (i < p.len()).then_some((hit != negate, i + 1))
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != '/').any(|k| go(&p[1..], &n[k..])),
            Some('?') => n.first().is_some_and(|&c| c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(p, n.first().copied().unwrap_or('\0'))) {
                (Some(&c), Some((true, used))) if c != '/' => go(&p[used..], &n[1..]),
                _ => false,
            },
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let a = Filters::parse(Some(r#"{"dangling":["true"],"reference":["app*"]}"#)).unwrap();
        let b = Filters::parse(Some(r#"{"dangling":{"true":true},"reference":{"app*":true}}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bool("dangling").unwrap(), Some(true));
        assert!(a.validate(&["dangling", "reference"]).is_ok());
        assert_eq!(a.validate(&["dangling"]).unwrap_err().message, "invalid filter 'reference'");
        assert_eq!(Filters::parse(Some("{bad")).unwrap_err().status.as_u16(), 400);
        assert!(Filters::parse(Some(r#"{"dangling":["maybe"]}"#)).unwrap().bool("dangling").is_err());
    }

    #[test]
    fn globs_like_go() {
        assert!(glob("app*", "app:1"));
        assert!(glob("*/app:*", "localhost/app:1"));
        assert!(!glob("app*", "localhost/app:1"));
        assert!(glob("a?p:[0-9]", "app:7"));
        assert!(!glob("a?p:[^0-9]", "app:7"));
        assert!(glob("busybox", "busybox"));
    }
}
