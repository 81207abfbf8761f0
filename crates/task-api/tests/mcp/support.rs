//! `McpApp`: the service on a fresh SQLite database with the in-memory publisher, served by a real actix server
//! on 127.0.0.1:0, plus rmcp clients, raw requests and event helpers for the MCP tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{HttpServer, test, web};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use slog::{Drain, Logger, o};
use task_api::ServiceConfig;
use task_api::config::{AuthConfig, CookieSameSite, EventsConfig, HttpConfig, Secret};
use task_api::publisher::{EventPublisher, MemoryPublisher};
use task_api::service::Delivery;
use task_api::state::AppState;
use task_domain::{Email, UserId};
use task_store::{DbConfig, NewUser, Store};
use time::OffsetDateTime;
use uuid::Uuid;

/// The JWT secret of the test apps.
pub(crate) const SECRET: &str = "mcp-test-secret-mcp-test-secret-0123";

/// An rmcp client connected to the app.
pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// A quiet logger, or a terminal one with `TEST_LOG=1`.
pub(crate) fn logger() -> Logger {
    if std::env::var_os("TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
        Logger::root(slog_term::FullFormat::new(decorator).build().fuse(), o!())
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// A registered user and a valid token for it.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// The user id.
    pub(crate) id: Uuid,
    /// A token signed with [`SECRET`].
    pub(crate) token: String,
}

/// An answer to a raw request.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: actix_web::http::header::HeaderMap,
    /// The body as JSON (`Null` when not JSON).
    pub(crate) body: Value,
    /// The body as text.
    pub(crate) text: String,
}

/// The service, served on a free port.
pub(crate) struct McpApp {
    /// The state (store, service, authenticator).
    pub(crate) state: web::Data<AppState>,
    /// What the service published.
    pub(crate) memory: MemoryPublisher,
    /// The port of the server.
    pub(crate) port: u16,
    handle: ServerHandle,
}

impl McpApp {
    /// A fresh database, the in-memory publisher, and the real app on 127.0.0.1:0.
    pub(crate) async fn start() -> Self {
        let log = logger();
        let dir = std::env::temp_dir().join("task-api-mcp-tests");
        std::fs::create_dir_all(&dir).expect("create the test database folder");
        let mut database = DbConfig::with_url(format!(
            "sqlite://{}",
            dir.join(format!("{}.db", Uuid::new_v4())).display()
        ));
        database.pool_size = 4;
        let store = Store::open(&database, &log)
            .await
            .expect("open the test store");
        let memory = MemoryPublisher::new();
        let publisher: Arc<dyn EventPublisher> = Arc::new(memory.clone());
        let config = ServiceConfig {
            database,
            http: HttpConfig {
                rate_limit_auth_per_minute: 0,
                rate_limit_tasks_per_minute: 0,
                ..HttpConfig::default()
            },
            auth: AuthConfig {
                jwt_secret: Secret::new(SECRET.to_owned()),
                cookie_secure: false,
                cookie_samesite: CookieSameSite::Lax,
                passwords: task_api::config::PasswordConfig::default(),
                user_cache_ttl: Duration::from_secs(5),
            },
            events: EventsConfig::default(),
            shutdown_timeout: Duration::from_secs(1),
        };
        let state = task_api::build_state(
            &config,
            store,
            Arc::clone(&publisher),
            Delivery::Publish(publisher),
            &log,
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        let server_state = state.clone();
        let server = HttpServer::new(move || task_api::app(server_state.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listen")
            .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            state,
            memory,
            port,
            handle,
        }
    }

    /// Stops the server.
    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }

    /// The MCP endpoint URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Registers a user directly in the store and signs a token for it.
    pub(crate) async fn user(&self) -> User {
        let id = Uuid::new_v4();
        let email = Email::parse(&format!("mcp-{}@example.com", id.simple())).expect("valid email");
        let new = NewUser {
            id: UserId::from_uuid(id),
            email: email.clone(),
            password_hash: "unused".to_owned(),
            now: OffsetDateTime::now_utc(),
        };
        self.state
            .store
            .create_user(new)
            .await
            .expect("create the user");
        let token = self
            .state
            .auth
            .issue(id, email.as_str())
            .expect("sign a token");
        User { id, token }
    }

    /// An rmcp client (legacy `initialize` lifecycle, what most clients use today) with `token` and `headers`.
    pub(crate) async fn client_with(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let transport =
            StreamableHttpClientTransport::from_config(self.transport_config(token, headers));
        ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|err| err.to_string())
    }

    /// An rmcp client for `user`.
    pub(crate) async fn client(&self, user: &User) -> Client {
        self.client_with(Some(&user.token), &[])
            .await
            .expect("the client connects")
    }

    /// An rmcp client on the current protocol revision (per-request metadata, no `initialize`).
    pub(crate) async fn client_latest(&self, user: &User) -> Client {
        let transport = StreamableHttpClientTransport::from_config(
            self.transport_config(Some(&user.token), &[]),
        );
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::LATEST],
        };
        ClientConfig::default()
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("the client discovers the server")
    }

    fn transport_config(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> StreamableHttpClientTransportConfig {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url());
        if let Some(token) = token {
            config = config.auth_header(token);
        }
        let custom = headers
            .iter()
            .map(|(name, value)| {
                (
                    rmcp_actix_web::transport::http::HeaderName::from_bytes(name.as_bytes())
                        .expect("header name"),
                    rmcp_actix_web::transport::http::HeaderValue::from_str(value)
                        .expect("header value"),
                )
            })
            .collect();
        config.custom_headers(custom)
    }

    /// Sends `req` through the app in process (no network).
    pub(crate) async fn raw(&self, req: test::TestRequest) -> Answer {
        let service = test::init_service(task_api::app(self.state.clone())).await;
        let res = test::call_service(&service, req.to_request()).await;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = test::read_body(res).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// Every event published since the last call, in order; then forgets them.
    pub(crate) fn take_events(&self) -> Vec<Event> {
        let events = self.memory.events();
        self.memory.clear();
        events
            .iter()
            .map(|event| Event {
                topic: event.topic.clone(),
                partition_key: event.partition_key.clone(),
                body: serde_json::from_str(&event.to_json().expect("event json"))
                    .expect("event parses"),
            })
            .collect()
    }
}

/// One published event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The topic.
    pub(crate) topic: String,
    /// The Kafka partition key.
    pub(crate) partition_key: String,
    /// The structured CloudEvents JSON.
    pub(crate) body: Value,
}

impl Event {
    /// The event type.
    pub(crate) fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

/// Sends one HTTP/1.0 request to the running server over TCP and reads the answer until the server closes, with the given headers
/// (a `Host` header is added unless one is given).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut header_map = actix_web::http::header::HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            header_map.append(
                actix_web::http::header::HeaderName::from_bytes(name.trim().as_bytes())
                    .expect("header name"),
                actix_web::http::header::HeaderValue::from_str(value.trim()).expect("header value"),
            );
        }
    }
    let chunked = header_map
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let text = if chunked {
        dechunk(text)
    } else {
        text.to_owned()
    };
    Answer {
        status: StatusCode::from_u16(status).expect("status"),
        headers: header_map,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}

/// The headers of an MCP `POST` with a bearer token.
pub(crate) fn mcp_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Accept", "application/json, text/event-stream".to_owned()),
        ("Content-Type", "application/json".to_owned()),
        ("Authorization", format!("Bearer {token}")),
    ]
}

/// A JSON-RPC `initialize` request.
pub(crate) fn initialize_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

/// Calls `tool` with `arguments` (a JSON object).
pub(crate) async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("tool arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap_or_else(|err| panic!("{tool} answered with a protocol error: {err}"))
}

/// The structured content of a successful result, checked against its JSON text item.
#[track_caller]
pub(crate) fn ok(result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "expected success, got {result:?}"
    );
    let structured = result
        .structured_content
        .clone()
        .expect("structured content");
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("a text item");
    let from_text: Value = serde_json::from_str(&text).expect("the text item is JSON");
    assert_eq!(
        from_text, structured,
        "the text item and the structured content differ"
    );
    structured
}

/// The text of a tool error.
#[track_caller]
pub(crate) fn tool_error(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error, got {result:?}"
    );
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("an error text item")
}

/// `(type, topic)` of each event.
pub(crate) fn kinds(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.kind().to_owned(), e.topic.clone()))
        .collect()
}
