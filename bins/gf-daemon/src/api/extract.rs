//! Extractors whose every rejection is an [`ApiError`] (JSON with a stable code), and the
//! role extractors that authenticate a request before its body is read.
//!
//! axum's own extractors answer some failures as plain text and JSON type errors as 422;
//! these map them: `invalid_json` / `invalid_body` / `invalid_query` / `invalid_path` (400),
//! `payload_too_large` (413), `unsupported_media_type` (415).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{ApiError, authorize};
use crate::app::Daemon;
use crate::auth::{Identity, Role};

/// A JSON body (`content-type: application/json` required).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// An optional JSON body: empty (or only whitespace) means `T::default()`; no content type
/// is required.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| bytes_rejection(&r))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| serde_error(&e))
    }
}

/// A query string.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(&r)),
        }
    }
}

/// Path parameters.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(r) => Err(path_rejection(&r)),
        }
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[allow(dead_code, reason = "some routes need the role, not the name")]
        pub(crate) struct $name(pub Identity);

        impl FromRequestParts<Daemon> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                d: &Daemon,
            ) -> Result<Self, Self::Rejection> {
                authorize(d, &parts.headers, None, $role).map(Self)
            }
        }
    };
}

role_extractor!(
    /// A bearer token with at least the viewer role. As an extractor it runs before the
    /// body is read, so an unauthenticated client cannot hold a request open with a slow
    /// body.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// A bearer token with at least the operator role (see [`Viewer`]).
    Operator,
    Role::Operator
);
role_extractor!(
    /// A bearer token with the admin role (see [`Viewer`]).
    Admin,
    Role::Admin
);
role_extractor!(
    /// A bearer token with the trader role: an external strategy (see [`Viewer`]).
    Trader,
    Role::Trader
);

/// Any valid token, whatever its role (the halt status and conditions, which a trader
/// reads too).
#[derive(Debug)]
pub(crate) struct AnyRole(pub Identity);

impl FromRequestParts<Daemon> for AnyRole {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Daemon) -> Result<Self, Self::Rejection> {
        super::authenticate(d, &parts.headers, None).map(Self)
    }
}

/// Maps axum's JSON rejection.
pub(crate) fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            rejection.body_text(),
        ),
        JsonRejection::JsonDataError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            rejection.body_text(),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a JSON body with `content-type: application/json`",
        ),
        JsonRejection::BytesRejection(r) => bytes_rejection(r),
        _ => by_status(rejection.status(), rejection.body_text()),
    }
}

/// Maps a failure to read the body.
pub(crate) fn bytes_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            rejection.body_text(),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            rejection.body_text(),
        )
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        rejection.body_text(),
    )
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        ApiError::internal(rejection.body_text())
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

fn serde_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let code = match e.classify() {
        Category::Syntax | Category::Eof => "invalid_json",
        Category::Data | Category::Io => "invalid_body",
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        format!("invalid JSON body: {e}"),
    )
}

/// A rejection this module does not know by name: its status, with the matching code.
pub(crate) fn by_status(status: StatusCode, message: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_body",
    };
    let status = if status.is_client_error() && !matches!(code, "invalid_body") {
        status
    } else if status.is_server_error() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, message)
}
