//! Typed errors of the registry client; each renders as one line naming the problem. The API edge maps
//! them to HTTP once.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference format: {0}")]
    BadReference(String),
    #[error(transparent)]
    Store(#[from] engine::error::Error),
    #[error("{0}")]
    Unauthorized(String),
    #[error("manifest for {0} not found: manifest unknown")]
    ManifestUnknown(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid manifest: {0}")]
    BadManifest(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("no matching manifest for {0} in the manifest list entries")]
    NoMatchingPlatform(String),
    #[error("{0}")]
    Redirect(String),
    /// A failure worth retrying: connection refused or reset, timeout, a cut transfer, 5xx, 429.
    #[error("{0}")]
    Transient(String),
    /// The registry answered with a status this client cannot go on from.
    #[error("{0}")]
    Registry(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Config(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }
}

/// A transport-level error of reqwest, with its cause chain (reqwest's Display alone hides it).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let s_txt = s.to_string();
        if !msg.contains(&s_txt) {
            msg.push_str(": ");
            msg.push_str(&s_txt);
        }
        src = s.source();
    }
    msg
}

pub(crate) fn transport(e: reqwest::Error, what: &str) -> Error {
    let msg = format!("{what}: {}", describe(&e));
    // A certificate the client does not trust (unknown CA, expired, wrong name) is not trusted on the next
    // attempt either: retrying it for ever would hang the pull. (rustls' own wording: its error type is not
    // a dependency of this crate.)
    if msg.contains("invalid peer certificate") {
        return Error::Registry(msg);
    }
    Error::Transient(msg)
}
