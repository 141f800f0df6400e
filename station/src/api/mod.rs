//! The control-plane API: the guide's Query API (version 2010-06-01) over HTTP, for the real
//! `aws importexport` command line and boto3.
//!
//! `POST /` (or `/?Operation=X`) with a form-encoded body; XML responses in the service's
//! namespace; the guide's error codes. Documents (PDFs) are served at `GET /documents/TOKEN`.

mod actions;
pub mod auth;
pub mod error;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pipelines::manifest::Rules;
use rand::Rng;

use crate::store::{Account, Store};
use crate::targets::Targets;
use error::ApiError;

/// The API version the service speaks.
pub const API_VERSION: &str = "2010-06-01";
/// The largest request body accepted: a manifest is at most 256 KiB, form-encoded up to 3x.
const MAX_BODY: usize = 1024 * 1024;

/// What the handlers share.
pub struct ApiState {
    /// The job store.
    pub store: Store,
    /// Manifest rules of this station.
    pub rules: Rules,
    /// The buckets, vaults and log uploads.
    pub targets: Arc<dyn Targets>,
    /// The station's name, for documents.
    pub station_name: String,
}

/// The router serving the API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", post(query).get(query))
        .route("/documents/{token}", get(document))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` completes.
///
/// # Errors
///
/// The address cannot be bound or serving fails.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "control-plane API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// One authenticated request, as the action handlers see it.
pub struct Request<'a> {
    /// The caller's account.
    pub account: Account,
    /// The decoded parameters.
    pub params: &'a [(String, String)],
    /// The request ID of the response.
    pub request_id: String,
    /// `http://host:port` as the client addressed the station, for document URLs.
    pub base_url: String,
}

impl Request<'_> {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter's value.
    ///
    /// # Errors
    ///
    /// MissingParameterException naming it.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.param(name)
            .ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// A boolean parameter (`true`/`false`, any case).
    ///
    /// # Errors
    ///
    /// InvalidParameterException for other values.
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.param(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_parameter(format!(
                "{name} is `{v}`; use true or false."
            ))),
        }
    }
}

fn request_id() -> String {
    let mut rng = rand::rng();
    let hex = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
        (0..n)
            .map(|_| format!("{:x}", rng.random_range(0..16u8)))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(8, &mut rng),
        hex(4, &mut rng),
        hex(4, &mut rng),
        hex(4, &mut rng),
        hex(12, &mut rng)
    )
}

fn xml_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn query(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = request_id();
    match handle(&state, &method, &uri, &headers, &body, &request_id).await {
        Ok((action, result)) => xml_response(200, xml::response(&action, result, &request_id)),
        Err(e) => {
            tracing::info!(code = %e.code, message = %e.message, "request refused");
            xml_response(
                e.status,
                xml::error(e.kind, &e.code, &e.message, &request_id),
            )
        }
    }
}

async fn handle(
    state: &ApiState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<(String, xml::Body), ApiError> {
    let query = uri.query().unwrap_or("");
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signed = auth::SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query,
        headers: &header_list,
        body,
        params: &params,
    };
    let claim = auth::claim(&signed)?;
    let (account, secret) = state
        .store
        .access_key(claim.access_key_id())?
        .ok_or_else(ApiError::unknown_access_key)?;
    auth::verify(&signed, &claim, &secret, crate::store::now())?;

    let find = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let action = find("Action")
        .or_else(|| find("Operation"))
        .ok_or_else(|| ApiError::missing_parameter("Action"))?;
    let version = find("Version").ok_or_else(|| ApiError::missing_parameter("Version"))?;
    if version != API_VERSION {
        return Err(ApiError::invalid_version(&version));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let req = Request {
        account,
        params: &params,
        request_id: request_id.to_owned(),
        base_url: format!("http://{host}"),
    };
    let result = actions::dispatch(state, &action, &req).await?;
    Ok((action, result))
}

async fn document(State(state): State<Arc<ApiState>>, Path(token): Path<String>) -> Response {
    let token = token.strip_suffix(".pdf").unwrap_or(&token);
    match state.store.document(token) {
        Ok(Some((content_type, body))) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such document\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "document");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the station's store failed\n",
            )
                .into_response()
        }
    }
}
