//! A small client of the `task-api` REST API (SPEC.md §2), written for the tests over hyper: every call is bounded
//! in time and returns the status, the echoed `X-Correlation-ID` and the JSON body.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use uuid::Uuid;

/// One answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The `X-Correlation-ID` response header.
    pub(crate) correlation: Option<String>,
    /// The `Set-Cookie` header, if any.
    pub(crate) set_cookie: Option<String>,
    pub(crate) body: Value,
    /// How long the request took.
    pub(crate) took: Duration,
}

/// A raw answer: status, headers and the whole body.
struct Sent {
    status: u16,
    headers: http::HeaderMap,
    bytes: Bytes,
    took: Duration,
}

impl Sent {
    /// The value of header `name`, if it is there and text.
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// How a request names its correlation.
#[derive(Debug, Clone)]
pub(crate) enum Trace {
    /// No header: the service makes a new id.
    None,
    /// `X-Correlation-ID: <uuid>`.
    CorrelationId(Uuid),
    /// `traceparent: 00-<trace id>-<span>-01`: the correlation id is the trace id as a UUID.
    W3c(Uuid),
}

impl Trace {
    /// The correlation id the service must use, when the request decides it.
    pub(crate) fn expected(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::CorrelationId(id) | Self::W3c(id) => Some(id.to_string()),
        }
    }
}

/// A client of one `task-api` instance.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    /// A client of the service at `base` (`http://127.0.0.1:PORT`).
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends one request (10 s at most).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        trace: &Trace,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let sent = self.send(method, path, &[], token, trace, body).await?;
        let body = if sent.bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&sent.bytes).with_context(|| {
                format!(
                    "{method} {path}: body is not JSON: {}",
                    String::from_utf8_lossy(&sent.bytes)
                )
            })?
        };
        Ok(Answer {
            status: sent.status,
            correlation: sent.header("x-correlation-id"),
            set_cookie: sent.header("set-cookie"),
            body,
            took: sent.took,
        })
    }

    /// Sends one request with `extra` headers (10 s at most) and reads the whole body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        token: Option<&str>,
        trace: &Trace,
        body: Option<&Value>,
    ) -> anyhow::Result<Sent> {
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        match trace {
            Trace::None => {}
            Trace::CorrelationId(id) => {
                request = request.header("x-correlation-id", id.to_string())
            }
            Trace::W3c(id) => {
                let span = &Uuid::new_v4().simple().to_string()[..16];
                request = request.header("traceparent", format!("00-{}-{span}-01", id.simple()));
            }
        }
        let payload = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let request = request.body(Full::new(Bytes::from(payload)))?;
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .with_context(|| format!("{method} {url}: no answer within 10 s"))?
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .with_context(|| format!("{method} {url}: body not read within 10 s"))??
            .to_bytes();
        Ok(Sent {
            status,
            headers,
            bytes,
            took: started.elapsed(),
        })
    }

    /// Like [`Api::call`], and checks the status and that the echoed correlation id is the expected one (or a
    /// UUID, when the request did not decide it).
    pub(crate) async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        trace: &Trace,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let answer = self.call(method, path, token, trace, body).await?;
        ensure!(
            answer.status == status,
            "{method} {path}: status {}, expected {status}: {}",
            answer.status,
            answer.body
        );
        let echoed = answer
            .correlation
            .as_deref()
            .with_context(|| format!("{method} {path}: no X-Correlation-ID in the answer"))?;
        match trace.expected() {
            Some(expected) => ensure!(
                echoed == expected,
                "{method} {path}: X-Correlation-ID {echoed}, expected {expected}"
            ),
            None => ensure!(
                Uuid::parse_str(echoed).is_ok(),
                "{method} {path}: X-Correlation-ID {echoed:?} is not a UUID"
            ),
        }
        Ok(answer)
    }

    /// Registers a new user with a random e-mail address; returns `(user id, token)`.
    pub(crate) async fn register(&self) -> anyhow::Result<(String, String)> {
        let email = format!("e2e-{}@Example.test", Uuid::new_v4().simple());
        let credentials = json!({"email": email, "password": "correct horse battery"});
        let answer = self
            .expect(
                201,
                "POST",
                "/api/v1/auth/register",
                None,
                &Trace::None,
                Some(&credentials),
            )
            .await?;
        let id = answer.body["id"]
            .as_str()
            .context("register: no id")?
            .to_owned();
        ensure!(
            answer.body["email"] == json!(email.to_lowercase()),
            "register: the e-mail is not stored lowercased: {}",
            answer.body
        );
        // Log in too (the cookie of either works; the login's is the one used).
        let answer = self
            .expect(
                200,
                "POST",
                "/api/v1/auth/login",
                None,
                &Trace::None,
                Some(&credentials),
            )
            .await?;
        ensure!(
            answer.body["id"] == json!(id),
            "login: another user: {}",
            answer.body
        );
        let cookie = answer.set_cookie.context("login: no Set-Cookie")?;
        let token = cookie
            .split(';')
            .next()
            .and_then(|pair| pair.trim().strip_prefix("auth_token="))
            .with_context(|| format!("login: the cookie is not auth_token: {cookie}"))?
            .to_owned();
        Ok((id, token))
    }

    /// Calls the MCP tool `name` with `arguments` over `POST /mcp` (Streamable HTTP, stateless, JSON-RPC
    /// `tools/call` without `initialize`, docs/MCP.md) as the user of `token`. Checks the status, the echoed
    /// correlation id (as [`Api::expect`]) and that the call succeeded; returns the tool's structured result
    /// (checked against its JSON text item) and the correlation id.
    pub(crate) async fn tool(
        &self,
        token: &str,
        trace: &Trace,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<(Value, String)> {
        let request = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        });
        let headers = [
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", MCP_PROTOCOL_VERSION),
        ];
        let sent = self
            .send("POST", "/mcp", &headers, Some(token), trace, Some(&request))
            .await?;
        let text = String::from_utf8_lossy(&sent.bytes);
        ensure!(
            sent.status == 200,
            "MCP {name}: status {}, expected 200: {text}",
            sent.status
        );
        let echoed = sent
            .header("x-correlation-id")
            .with_context(|| format!("MCP {name}: no X-Correlation-ID in the answer"))?;
        match trace.expected() {
            Some(expected) => ensure!(
                echoed == expected,
                "MCP {name}: X-Correlation-ID {echoed}, expected {expected}"
            ),
            None => ensure!(
                Uuid::parse_str(&echoed).is_ok(),
                "MCP {name}: X-Correlation-ID {echoed:?} is not a UUID"
            ),
        }
        let message = json_rpc_message(&sent, &text)
            .with_context(|| format!("MCP {name}: the answer is no JSON-RPC message: {text}"))?;
        ensure!(
            message["jsonrpc"] == json!("2.0") && message["id"] == json!(1),
            "MCP {name}: not the answer to the request: {message}"
        );
        let result = &message["result"];
        ensure!(
            result.is_object(),
            "MCP {name}: no result (protocol error?): {message}"
        );
        ensure!(
            result["isError"] != json!(true),
            "MCP {name}: tool error: {result}"
        );
        let structured = result["structuredContent"].clone();
        ensure!(
            structured.is_object(),
            "MCP {name}: no structuredContent: {result}"
        );
        let item = result["content"][0]["text"]
            .as_str()
            .with_context(|| format!("MCP {name}: no text item: {result}"))?;
        let item: Value = serde_json::from_str(item)
            .with_context(|| format!("MCP {name}: the text item is not JSON: {item}"))?;
        ensure!(
            item == structured,
            "MCP {name}: the text item {item} differs from structuredContent {structured}"
        );
        Ok((structured, echoed))
    }
}

/// The MCP protocol revision the raw tool calls name (served without `initialize` by the stateless server).
const MCP_PROTOCOL_VERSION: &str = "2025-11-25";

/// The JSON-RPC message of an MCP answer: the body itself (`application/json`), or the first `data:` event holding
/// a JSON-RPC response (`text/event-stream`).
fn json_rpc_message(sent: &Sent, text: &str) -> anyhow::Result<Value> {
    let content_type = sent.header("content-type").unwrap_or_default();
    if !content_type.starts_with("text/event-stream") {
        return Ok(serde_json::from_str(text)?);
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("result").is_some() || message.get("error").is_some())
        .context("no JSON-RPC response in the event stream")
}
