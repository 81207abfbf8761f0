//! Per-request plumbing: the request's [`RequestContext`] (correlation id, `traceparent`, child logger), the access
//! log line, metrics, and the envelope for error responses that actix produced without one (unknown routes, 405).
//! It reads the root `Logger` and the `Metrics` the app registers as app data; authentication and rate limits are
//! not here (the extractors in `auth` and the scope middleware of `rate_limit` do those).

use std::future::{Ready, ready};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use futures_util::FutureExt;
use slog::{Logger, debug, error, info, o, warn};
use uuid::Uuid;

use crate::auth::RequestUserId;
use crate::context::RequestContext;
use crate::error::{ApiError, ErrorChain, envelope_for_status};
use crate::metrics::Metrics;

/// The response header that echoes the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The root logger the app registered (`web::Data<Logger>`), or one that discards.
fn root_logger(req: &HttpRequest) -> Logger {
    req.app_data::<web::Data<Logger>>()
        .map(|log| Logger::clone(log))
        .unwrap_or_else(|| Logger::root(slog::Discard, o!()))
}

/// The context [`request_middleware`] gave the request (a detached one where it did not run).
impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let found = req.extensions().get::<RequestContext>().cloned();
        ready(Ok(found.unwrap_or_else(|| {
            RequestContext::detached(&root_logger(req))
        })))
    }
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), as a UUID.
pub fn trace_id_from_traceparent(value: &str) -> Option<Uuid> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    if parts.len() < 4 {
        return None;
    }
    let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.len() != 4) {
        return None;
    }
    if !is_hex(trace_id, 32) || !is_hex(parent_id, 16) || !is_hex(flags, 2) {
        return None;
    }
    let raw = u128::from_str_radix(trace_id, 16).ok()?;
    let parent = u64::from_str_radix(parent_id, 16).ok()?;
    (raw != 0 && parent != 0).then(|| Uuid::from_u128(raw))
}

/// The correlation id and forwardable `traceparent` of a request, per SPEC §3.3.
pub fn correlation_for(headers: &actix_web::http::header::HeaderMap) -> (Uuid, Option<String>) {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(tp) = header_str("traceparent")
        && let Some(id) = trace_id_from_traceparent(tp)
    {
        return (id, Some(tp.trim().to_owned()));
    }
    for name in [CORRELATION_HEADER, "x-request-id"] {
        if let Some(id) = header_str(name).and_then(|v| Uuid::parse_str(v.trim()).ok()) {
            return (id, None);
        }
    }
    (Uuid::new_v4(), None)
}

/// The innermost middleware: a panic in a handler (or an extractor, or an inner middleware) becomes a 500 with the
/// envelope instead of a dropped connection. The panic is logged at ERROR here with its message, and the access
/// log line of [`request_middleware`] follows as for any 500. Handlers are written not to panic; this is the net
/// under them.
pub async fn catch_panic(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let log = req
        .extensions()
        .get::<RequestContext>()
        .map(|ctx| ctx.log.clone())
        .unwrap_or_else(|| Logger::root(slog::Discard, o!()));
    let method = req.method().to_string();
    let path = req.path().to_owned();
    // Unwind safety: after a panic nothing of the request is used again; shared state is behind locks that
    // recover from poisoning or atomics.
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".to_owned());
            error!(log, "request handler panicked"; "method" => &method, "path" => &path, "panic" => &message);
            Err(PanicError.into())
        }
    }
}

/// The error a caught panic is answered with: a 500 `INTERNAL_ERROR` envelope, nothing of the panic leaked.
#[derive(Debug, thiserror::Error)]
#[error("a request handler panicked")]
struct PanicError;

impl ResponseError for PanicError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        ApiError::internal("a request handler panicked").error_response()
    }
}

/// The method as a metric label: one of the methods the service knows, or `OTHER`, so clients cannot add label
/// values (and time series) at will.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The middleware: context in, one access log line and metrics out, envelope on bare error responses.
pub async fn request_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let (correlation_id, traceparent) = correlation_for(req.headers());
    let ctx = RequestContext::new(correlation_id, traceparent, &root_logger(req.request()));
    let log = ctx.log.clone();
    req.extensions_mut().insert(ctx);
    let method = req.method().to_string();
    let method_label = method_label(req.method());
    let path = req.path().to_owned();

    // Routing needs the only reference to the request, so nothing here may keep a clone of it.
    let mut res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            // Not rendered by a handler (an inner middleware failed, a handler panicked): actix renders it; log it
            // and count it here.
            let status = err.as_response_error().status_code();
            error!(log, "{method} {path} failed before a response"; "method" => &method, "path" => &path,
                "status" => status.as_u16(),
                "duration_ms" => started.elapsed().as_secs_f64() * 1000.0, "error" => %err);
            if let Some(metrics) = &metrics {
                metrics.observe(
                    method_label,
                    "unmatched",
                    status.as_u16(),
                    started.elapsed().as_secs_f64(),
                );
            }
            let mut response = err.error_response();
            if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(CORRELATION_HEADER), value);
            }
            return Err(
                actix_web::error::InternalError::from_response(err.to_string(), response).into(),
            );
        }
    };

    let status = res.status();
    if status.as_u16() >= 400 && !is_json(&res) {
        let api = envelope_for_status(status);
        let (http_req, old) = res.into_parts();
        let mut fresh = api.error_response();
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                fresh.headers_mut().insert(name.clone(), value.clone());
            }
        }
        res = ServiceResponse::new(http_req, fresh);
    }
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        res.headers_mut()
            .insert(HeaderName::from_static(CORRELATION_HEADER), value);
    }

    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let user_id = res
        .request()
        .extensions()
        .get::<RequestUserId>()
        .map(|u| u.0.to_string());
    // Left out (null in JSON) on requests without an authenticated user.
    let user_id = user_id.as_deref();
    if let Some(metrics) = &metrics {
        metrics.observe(method_label, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    let failure = res
        .response()
        .error()
        .map(|err| match err.as_error::<ApiError>() {
            Some(api) => ErrorChain(api).to_string(),
            None => err.to_string(),
        });
    let status_code = status.as_u16();
    let msg = format!("{method} {path} -> {status_code}");
    if status.is_server_error() {
        error!(log, "{}", msg; "method" => &method, "path" => &path, "status" => status_code,
            "duration_ms" => duration_ms, "user_id" => user_id, "error" => failure.unwrap_or_default());
    } else if path == "/healthz" || path == "/readyz" || path == "/metrics" {
        debug!(log, "{}", msg; "method" => &method, "path" => &path, "status" => status_code,
            "duration_ms" => duration_ms, "user_id" => user_id);
    } else if status == 429 {
        warn!(log, "{}", msg; "method" => &method, "path" => &path, "status" => status_code,
            "duration_ms" => duration_ms, "user_id" => user_id);
    } else {
        info!(log, "{}", msg; "method" => &method, "path" => &path, "status" => status_code,
            "duration_ms" => duration_ms, "user_id" => user_id);
    }
    Ok(res)
}

fn is_json<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;

    use super::*;

    #[test]
    fn traceparent_trace_id_becomes_a_uuid() {
        let id =
            trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap();
        assert_eq!(id.to_string(), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace_id_from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn correlation_prefers_traceparent_then_uuid_headers() {
        let mut headers = HeaderMap::new();
        let given = Uuid::new_v4();
        headers.insert(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_str(&given.to_string()).unwrap(),
        );
        assert_eq!(correlation_for(&headers), (given, None));
        headers.insert(
            HeaderName::from_static("x-correlation-id"),
            HeaderValue::from_static("not-a-uuid"),
        );
        assert_eq!(correlation_for(&headers).0, given);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static(tp),
        );
        let (id, forwarded) = correlation_for(&headers);
        assert_eq!(id.to_string(), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
        assert_eq!(forwarded.as_deref(), Some(tp));
        assert_ne!(correlation_for(&HeaderMap::new()).0, given);
    }
}
