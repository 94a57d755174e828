//! JSON request bodies (container create, volume create, …, to come): at most 1 MiB, `Content-Type`
//! checked as dockerd does, and docker-style 400s for what does not parse.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub const MAX_JSON_BODY: usize = 1 << 20;

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.is_empty() && mime != "application/json" {
                return Err(ApiError::bad_request(format!(
                    "unsupported Content-Type header ({ct}): must be 'application/json'"
                )));
            }
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY).await.map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {MAX_JSON_BODY} bytes"))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("invalid JSON: empty request body"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        #[serde(rename = "Image")]
        image: String,
    }

    async fn parse(ct: Option<&str>, body: Vec<u8>) -> Result<String, ApiError> {
        let mut b = Request::builder().method("POST").uri("/x");
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let req = b.body(Body::from(body)).unwrap();
        JsonBody::<Doc>::from_request(req, &()).await.map(|JsonBody(d)| d.image)
    }

    #[tokio::test]
    async fn accepts_json_and_refuses_the_rest() {
        assert_eq!(parse(Some("application/json"), br#"{"Image":"app"}"#.to_vec()).await.unwrap(), "app");
        assert_eq!(parse(None, br#"{"Image":"app"}"#.to_vec()).await.unwrap(), "app");
        let e = parse(Some("application/json"), b"{not json".to_vec()).await.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        let e = parse(Some("text/plain"), b"{}".to_vec()).await.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(parse(None, Vec::new()).await.unwrap_err().status, StatusCode::BAD_REQUEST);
        let huge = vec![b' '; MAX_JSON_BODY + 1];
        assert_eq!(parse(None, huge).await.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
