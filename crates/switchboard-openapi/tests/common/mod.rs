//! A small Petstore on 127.0.0.1 (port 0) that records every request it receives, so tests
//! can assert exactly what the connector sent.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Raw path and query, exactly as sent (still percent-encoded).
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Where `/api/pets/moved-away` redirects (another origin).
    pub elsewhere: Arc<Mutex<String>>,
    tokens_issued: Arc<Mutex<u32>>,
}

impl Recorder {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
    pub fn tokens_issued(&self) -> u32 {
        *self.tokens_issued.lock().unwrap()
    }
}

pub struct PetServer {
    pub base: String,
    pub recorder: Recorder,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes of `/api/pets/huge`: more than any cap the tests set.
pub const HUGE_BYTES: usize = 256 * 1024;

pub async fn start() -> PetServer {
    let recorder = Recorder::default();
    let app = Router::new().fallback(handle).with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    PetServer {
        base,
        recorder,
        task,
    }
}

async fn handle(
    State(recorder): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    recorder.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        uri: raw.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let json =
        |status: StatusCode, value: serde_json::Value| (status, axum::Json(value)).into_response();
    let path = uri.path();
    match (method.as_str(), path) {
        ("POST", "/token") => {
            *recorder.tokens_issued.lock().unwrap() += 1;
            let n = recorder.tokens_issued();
            json(
                StatusCode::OK,
                json!({ "access_token": format!("token-{n}"), "token_type": "Bearer", "expires_in": 3600 }),
            )
        }
        ("GET", "/api/pets") => json(StatusCode::OK, json!([{ "id": 1, "name": "Rex" }])),
        ("POST", "/api/pets") => {
            let mut pet: serde_json::Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            pet["id"] = json!(7);
            json(StatusCode::OK, pet)
        }
        ("GET", "/api/pets/404") => json(
            StatusCode::NOT_FOUND,
            json!({ "code": 404, "message": "no such pet" }),
        ),
        ("GET", "/api/pets/huge") => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("\"{}\"", "x".repeat(HUGE_BYTES)),
        )
            .into_response(),
        ("GET", "/api/pets/moved-here") => {
            (StatusCode::FOUND, [(header::LOCATION, "/api/pets/1")]).into_response()
        }
        ("GET", "/api/pets/moved-away") => {
            let target = format!("{}/api/pets/1", recorder.elsewhere.lock().unwrap());
            (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
        }
        ("GET", "/api/pets/unauthorized-once") => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if bearer == "Bearer token-1" {
                json(
                    StatusCode::UNAUTHORIZED,
                    json!({ "code": 401, "message": "revoked" }),
                )
            } else {
                json(StatusCode::OK, json!({ "id": 2, "name": "Tom" }))
            }
        }
        ("GET", p) if p.starts_with("/api/pets/") && p.ends_with("/photo") => {
            ([(header::CONTENT_TYPE, "text/plain")], "=^.^=").into_response()
        }
        ("GET", p) if p.starts_with("/api/pets/") => {
            json(StatusCode::OK, json!({ "id": 1, "name": "Rex", "path": p }))
        }
        ("DELETE", p) if p.starts_with("/api/pets/") => StatusCode::NO_CONTENT.into_response(),
        ("GET", "/api/search") => json(StatusCode::OK, json!([])),
        _ => json(
            StatusCode::NOT_FOUND,
            json!({ "code": 404, "message": "no route" }),
        ),
    }
}

pub fn petstore_path() -> String {
    format!(
        "{}/tests/fixtures/petstore.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}
