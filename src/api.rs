//! The HTTP front end (warp). The only module that knows wire shapes: it turns requests into
//! calls on the rest of the server and results into the JSON envelope of DESIGN.md ("HTTP
//! contract"). Every failure — a handler's error, a warp rejection, an unknown route — goes
//! through the single mapping in `errors`, so clients always get the envelope with a stable
//! `error_code`, never warp's plain-text rejections.

mod answers;
mod body;
mod claude;
mod dashboard;
mod dto;
mod envelope;
mod errors;
mod events;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod guards;
mod health;
mod openapi;
mod otlp;
mod raw;
mod schemas;
mod security;
mod sessions;
mod system;
mod terminal;
pub(crate) mod usage;
mod ws;

pub(crate) use errors::{MAX_HEADER_LINES, MAX_HEAD_BYTES};
pub(crate) use events::encode as encode_event;
pub use guards::{Head, Wire};
pub use health::{ServiceState, Services};
pub use raw::{connection_refusal, parse_refusal, ConnectionRefusal};
pub(crate) use security::client_key;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::ready;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::watch;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use errors::ApiError;
use security::Security;
use sessions::{reply, Answer, Parsed};

use crate::claude::Claude;
use crate::config::Settings;
use crate::monitor::Monitor;
use crate::paths::PathPolicy;
use crate::session::{AgentOp, SessionRegistry};

/// What the routes need from the server that builds them; cloned into every request (one
/// reference count: the routes' filters are cloned for each request too).
#[derive(Debug, Clone)]
pub struct ApiContext(Arc<Context>);

/// The shared part of an [`ApiContext`]: what it dereferences to.
#[derive(Debug)]
pub struct Context {
    started_at: Instant,
    services: Services,
    max_body_bytes: u64,
    /// `server.body_read_timeout_ms`: how long a route waits for a whole body.
    body_read_timeout: Duration,
    sessions: SessionRegistry,
    /// The monitor's samples and open alerts.
    monitor: Monitor,
    /// Claude Code sessions as their hooks tell of them.
    claude: Claude,
    paths: PathPolicy,
    /// WebSocket connections: the fan-out of the event bus, the client count.
    live: ws::Live,
    /// Set at shutdown: every WebSocket connection closes (1001).
    closing: Arc<watch::Sender<bool>>,
    security: Arc<Security>,
    /// Answers of `GET /sessions/{id}` kept until their session changes.
    answers: answers::Answers,
    /// The rows `GET /sessions` selects from, kept while no session changes.
    listing: sessions::Listing,
    /// `[hooks] auto_install`: where the hooks a session's directory gets post to.
    auto_install: Option<AutoInstall>,
}

/// What `[hooks] auto_install` writes into a session's working directory.
#[derive(Debug, Clone)]
struct AutoInstall {
    /// The server's own URL.
    server_url: String,
    /// The `session-manager` program, for the command hooks.
    shim: Option<std::path::PathBuf>,
}

impl ApiContext {
    /// Captures the start time (for `uptime_seconds`) and the settings the routes enforce;
    /// `bound` is the listener's address (a valid `Host`); `services` is shared with whoever
    /// reports the state of each subsystem (`api` = `Stopping` refuses requests), and
    /// `sessions` is what the session routes drive. Starts the WebSocket fan-out from
    /// `sessions`' event bus, so it must run inside the tokio runtime.
    pub fn new(
        settings: &Settings,
        bound: SocketAddr,
        services: Services,
        sessions: SessionRegistry,
        monitor: Monitor,
        claude: Claude,
    ) -> ApiContext {
        let (closing, closing_rx) = watch::channel(false);
        let live = ws::Live::start(
            sessions.clone(),
            ws::QueueBounds::from(&settings.events),
            closing_rx,
        );
        ApiContext(Arc::new(Context {
            started_at: Instant::now(),
            services,
            max_body_bytes: settings.server.max_body_bytes,
            body_read_timeout: Duration::from_millis(settings.server.body_read_timeout_ms),
            paths: sessions.paths().clone(),
            sessions,
            monitor,
            claude,
            live,
            closing: Arc::new(closing),
            security: Arc::new(Security::new(&settings.server, bound)),
            answers: answers::Answers::default(),
            listing: sessions::Listing::default(),
            auto_install: settings.hooks.auto_install.then(|| AutoInstall {
                server_url: format!("http://{bound}"),
                shim: crate::claude::install::this_program(),
            }),
        }))
    }

    /// WebSocket clients connected now (`websocket_clients` of `/system-status`).
    pub fn websocket_clients(&self) -> usize {
        self.live.clients()
    }

    /// With `[hooks] auto_install`, merges the hooks into `dir`'s
    /// `.claude/settings.local.json`, on a blocking thread (it is file I/O); a failure is a
    /// warning in the log, never the request's failure: the session exists either way.
    pub(crate) async fn auto_install_hooks(&self, dir: &str) {
        let Some(auto) = self.auto_install.clone() else {
            return;
        };
        let [file, _] = crate::claude::install::project_files(std::path::Path::new(dir));
        let shown = file.clone();
        let installed = tokio::task::spawn_blocking(move || {
            crate::claude::install::install(&file, &auto.server_url, auto.shim.as_deref())
        })
        .await;
        match installed {
            Ok(Ok(change)) if change.written => {
                tracing::info!(file = %shown.display(), "installed Claude Code hooks")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(
                error = %crate::telemetry::error_chain(&error),
                "cannot install Claude Code hooks"
            ),
            Err(error) => tracing::warn!(%error, "cannot install Claude Code hooks"),
        }
    }

    /// Closes every WebSocket connection (1001, "server shutting down"), now and for those
    /// still being upgraded: the graceful drain does not wait for upgraded connections.
    pub fn close_websockets(&self) {
        self.closing.send_replace(true);
    }
}

impl std::ops::Deref for ApiContext {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.0
    }
}

/// Every route, guarded and with errors already turned into envelopes, ready for
/// `server` (through `warp::service`); it never rejects.
pub fn routes(
    ctx: ApiContext,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let health = warp::path!("health")
        .and(get_or_head())
        .and(with_context(ctx.clone()))
        .then(health::get)
        .or(warp::path!("health").and(other_methods("GET, HEAD")))
        .unify();

    let metrics = warp::path!("metrics")
        .and(get_or_head())
        .and(with_context(ctx.clone()))
        .then(system::prometheus)
        .or(warp::path!("metrics").and(other_methods("GET, HEAD")))
        .unify();
    let openapi = warp::path!("openapi.json")
        .and(get_or_head())
        .then(openapi::serve)
        .or(warp::path!("openapi.json").and(other_methods("GET, HEAD")))
        .unify();
    let websocket = warp::path!("ws" / "sessions")
        .and(warp::ws())
        .and(with_context(ctx.clone()))
        .map(|upgrade: warp::ws::Ws, ctx: ApiContext| {
            let live = ctx.live.clone();
            upgrade
                .max_message_size(ws::MAX_CLIENT_MESSAGE)
                .max_frame_size(ws::MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| ws::serve(socket, live))
                .into_response()
        })
        .or(warp::path!("ws" / "sessions").and(not_an_upgrade()))
        .unify();
    let terminal_socket = warp::path!("ws" / "sessions" / String / "agents" / String / "terminal")
        .and(warp::ws())
        .and(with_context(ctx.clone()))
        .then(|id, name, upgrade, ctx| terminal::attach(upgrade, id, name, ctx))
        .or(
            warp::path!("ws" / "sessions" / String / "agents" / String / "terminal")
                .and(not_an_upgrade())
                .map(|_, _, response| response),
        )
        .unify()
        .boxed();
    // The dashboard: the page and its embedded assets (no data, so no token needed; see
    // `security`). Not part of the API, so not in /openapi.json.
    let dashboard = warp::path::end()
        .and(get_or_head())
        .and(warp::header::headers_cloned())
        .map(|request: warp::http::HeaderMap| dashboard::index(&request))
        .or(warp::path::end().and(other_methods("GET, HEAD")))
        .unify()
        .or(warp::path!("assets" / String)
            .and(get_or_head())
            .and(warp::header::headers_cloned())
            .map(|name: String, request: warp::http::HeaderMap| {
                dashboard::asset(&name, &request).unwrap_or_else(|| reply(Err(ApiError::NotFound)))
            }))
        .unify()
        .or(warp::path!("assets" / String)
            .and(other_methods("GET, HEAD"))
            .map(|_, response| response))
        .unify()
        .boxed();

    // Every route goes into this tree (`.or(...).unify()`, each answering a `Response`), and
    // so behind every guard below; none needs to check anything itself. The paths are
    // disjoint, so the order only saves work: the API's routes, the busiest, come first.
    // `GET /sessions/{id}` of a session id as such, the route polled most, is matched before
    // the rest: the tree's boxed groups each allocate their future on every request they
    // see. Any other method or segment (`import`, a percent-encoded id) gets `not_found`
    // here, which never wins over the answer of the route below that takes it.
    let session = warp::path!("api" / "claude" / "sessions" / Uuid)
        .and(warp::method())
        .and_then(|id: Uuid, method: Method| {
            ready(if method == Method::GET || method == Method::HEAD {
                Ok(id)
            } else {
                Err(warp::reject::not_found())
            })
        })
        .and(with_context(ctx.clone()))
        .then(|id, ctx| answer(sessions::get_session(ctx, id)));
    let otlp = otlp_route(ctx.clone(), "metrics", otlp::Signal::Metrics)
        .or(otlp_route(ctx.clone(), "logs", otlp::Signal::Logs))
        .unify()
        .boxed();
    let tree = session
        .or(warp::path("api")
            .and(warp::path("claude"))
            .and(claude(ctx.clone())))
        .unify()
        .or(otlp)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .or(websocket)
        .unify()
        .or(terminal_socket)
        .unify()
        .or(dashboard)
        .unify()
        // Boxed: warp clones the routes for every request, and a boxed tree is one reference
        // count instead of every filter and context in it.
        .boxed();

    guarded(&ctx, tree).with(warp::log::custom(|info| {
        tracing::debug!(
            method = %info.method(),
            path = info.path(),
            status = info.status().as_u16(),
            elapsed_ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }))
}

/// The guard chain around the route tree, in this order: HTTP framing (a head too large,
/// Content-Length with Transfer-Encoding, HTTP/1.1 without Host) → rate limit → Host/Origin →
/// (a CORS preflight is answered here) → bearer token → shutdown → body limit → routes.
/// Each guard refuses with an `ApiError` (the preflight with its own rejection); one
/// `recover` turns any refusal into the envelope (the preflight into its 204),
/// and `security::decorate` adds the CORS and WebSocket headers to whatever comes out.
fn guarded<T>(
    ctx: &ApiContext,
    tree: T,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static
where
    T: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let answered = guards::well_framed()
        .and(security::admit(ctx.security.clone()))
        .and(guards::not_draining(ctx.services.clone()))
        .and(guards::body_limit(ctx.max_body_bytes))
        .and(tree)
        .recover(errors::recover)
        .unify();
    security::decorate(ctx.security.clone(), answered)
}

/// Every route under `/api/claude`.
fn claude(ctx: ApiContext) -> BoxedFilter<(Response,)> {
    let c = move || with_context(ctx.clone());

    // /sessions
    let sessions_root = warp::path!("sessions")
        .and(warp::post())
        .and(c())
        .and(json_body::<Map<String, Value>>(c()))
        .then(|ctx, body| answer(sessions::create(ctx, body)))
        .or(warp::path!("sessions")
            .and(get_or_head())
            .and(c())
            .and(body::query())
            .then(|ctx, params| answer(sessions::list(ctx, params))))
        .unify()
        .or(warp::path!("sessions").and(other_methods("GET, HEAD, POST")))
        .unify()
        .boxed();
    let import = warp::path!("sessions" / "import")
        .and(warp::post())
        .and(c())
        .and(json_body(c()))
        .then(|ctx, body| answer(sessions::import(ctx, body)))
        // Answered here, not rejected: `sessions/{id}` also matches this path, and its 405
        // (GET, PUT, DELETE) or its 404 (no session `import`) would win the merge.
        .or(warp::path!("sessions" / "import").map(|| {
            reply(Err(ApiError::MethodNotAllowed {
                allow: Some("POST"),
            }))
        }))
        .unify()
        .boxed();
    let session = warp::path!("sessions" / String)
        .and(get_or_head())
        .and(c())
        .then(|id, ctx| answer(sessions::get(ctx, id)))
        .or(warp::path!("sessions" / String)
            .and(warp::put())
            .and(c())
            .and(json_body(c()))
            .then(|id, ctx, body| answer(sessions::update(ctx, id, body))))
        .unify()
        .or(warp::path!("sessions" / String)
            .and(warp::delete())
            .and(c())
            .and(body::query())
            .then(|id, ctx, params| answer(sessions::delete(ctx, id, params))))
        .unify()
        .or(warp::path!("sessions" / String)
            .and(other_methods("GET, HEAD, PUT, DELETE"))
            .map(|_, response| response))
        .unify()
        .boxed();
    let navigate = post_json(c(), "navigate", sessions::navigate).boxed();
    let clone = post_json(c(), "clone", sessions::clone).boxed();
    let export = post_json(c(), "export", sessions::export).boxed();
    let hook_events = post_json(c(), "events", sessions::hook_event).boxed();
    let agents = get_of(c(), "agents", sessions::agents).boxed();
    let status = get_of(c(), "status", sessions::status).boxed();
    let usage = get_of(c(), "usage", usage::get).boxed();
    let metrics = warp::path!("sessions" / String / "metrics")
        .and(get_or_head())
        .and(c())
        .and(body::query())
        .then(|id, ctx, params| answer(sessions::metrics(ctx, id, params)))
        .or(warp::path!("sessions" / String / "metrics")
            .and(other_methods("GET, HEAD"))
            .map(|_, response| response))
        .unify()
        .boxed();
    let terminal_input = warp::path!("sessions" / String / "agents" / String / "input")
        .and(warp::post())
        .and(c())
        .and(json_body(c()))
        .then(|id, name, ctx, body| answer(terminal::input(ctx, id, name, body)))
        .boxed();
    let terminal_resize = warp::path!("sessions" / String / "agents" / String / "resize")
        .and(warp::post())
        .and(c())
        .and(json_body(c()))
        .then(|id, name, ctx, body| answer(terminal::resize(ctx, id, name, body)))
        .boxed();
    let terminal_screen = warp::path!("sessions" / String / "agents" / String / "screen")
        .and(get_or_head())
        .and(c())
        .then(|id, name, ctx| answer(terminal::screen(ctx, id, name)))
        .boxed();
    let agent_ops = warp::path!("sessions" / String / "agents" / String / String)
        .and(warp::post())
        .and(c())
        .then(|id: String, name: String, op: String, ctx| async move {
            let op = match op.as_str() {
                "activate" => AgentOp::Activate,
                "deactivate" => AgentOp::Deactivate,
                "restart" => AgentOp::Restart,
                _ => return reply(Err(ApiError::NotFound)),
            };
            reply(sessions::agent_command(ctx, id, name, op).await)
        })
        .boxed();
    let logs = warp::path!("sessions" / String / "agents" / String / "logs")
        .and(get_or_head())
        .and(c())
        .and(body::query())
        .then(|id, name, ctx, params| answer(sessions::logs(ctx, id, name, params)))
        .boxed();
    let agent_paths = warp::path!("sessions" / String / "agents" / String / String)
        .map(|_: String, _: String, action: String| {
            let allow = match action.as_str() {
                "logs" | "screen" => Some("GET, HEAD"),
                "activate" | "deactivate" | "restart" | "input" | "resize" => Some("POST"),
                _ => None,
            };
            reply(Err(match allow {
                Some(allow) => ApiError::MethodNotAllowed { allow: Some(allow) },
                None => ApiError::NotFound,
            }))
        })
        .boxed();
    let context_all = get_of(c(), "context", sessions::context_all).boxed();
    let context_key = warp::path!("sessions" / String / "context" / String)
        .and(get_or_head())
        .and(c())
        .then(|id, key, ctx| answer(sessions::context_get(ctx, id, key)))
        .or(warp::path!("sessions" / String / "context" / String)
            .and(warp::put())
            .and(c())
            .and(json_body(c()))
            .then(|id, key, ctx, body| answer(sessions::context_put(ctx, id, key, body))))
        .unify()
        .or(warp::path!("sessions" / String / "context" / String)
            .and(warp::delete())
            .and(c())
            .then(|id, key, ctx| answer(sessions::context_delete(ctx, id, key))))
        .unify()
        .or(warp::path!("sessions" / String / "context" / String)
            .and(other_methods("GET, HEAD, PUT, DELETE"))
            .map(|_, _, response| response))
        .unify()
        .boxed();

    // Server-wide.
    let validate_path = warp::path!("validate-path")
        .and(warp::post())
        .and(c())
        .and(json_body(c()))
        .then(|ctx, body| answer(system::validate_path(ctx, body)))
        .or(warp::path!("validate-path").and(other_methods("POST")))
        .unify()
        .boxed();
    let validate_paths = warp::path!("validate-paths")
        .and(warp::post())
        .and(c())
        .and(json_body(c()))
        .then(|ctx, body| answer(system::validate_paths(ctx, body)))
        .or(warp::path!("validate-paths").and(other_methods("POST")))
        .unify()
        .boxed();
    let agent_types = warp::path!("agent-types")
        .and(get_or_head())
        .then(|| answer(system::agent_types()))
        .or(warp::path!("agent-types").and(other_methods("GET, HEAD")))
        .unify()
        .boxed();
    let analytics = warp::path!("analytics")
        .and(get_or_head())
        .and(c())
        .then(|ctx| answer(system::analytics(ctx)))
        .or(warp::path!("analytics").and(other_methods("GET, HEAD")))
        .unify()
        .boxed();
    let events = warp::path!("events")
        .and(get_or_head())
        .and(c())
        .and(body::query())
        .then(|ctx, params| answer(events::list(ctx, params)))
        .or(warp::path!("events").and(other_methods("GET, HEAD")))
        .unify()
        .boxed();
    let claude_hooks = warp::path!("hooks")
        .and(warp::post())
        .and(c())
        .and(warp::header::headers_cloned())
        .and(json_body(c()))
        .then(|ctx, headers, body| answer(claude::hooks(ctx, headers, body)))
        .or(warp::path!("hooks").and(other_methods("POST")))
        .unify()
        .boxed();
    let claude_activity = warp::path!("activity")
        .and(get_or_head())
        .and(c())
        .then(|ctx| answer(claude::activity(ctx)))
        .or(warp::path!("activity").and(other_methods("GET, HEAD")))
        .unify()
        .boxed();
    let system_status = warp::path!("system-status")
        .and(get_or_head())
        .and(c())
        .then(|ctx| answer(system::system_status(ctx)))
        .or(warp::path!("system-status").and(other_methods("GET, HEAD")))
        .unify()
        .boxed();

    sessions_root
        .or(import)
        .unify()
        .or(session)
        .unify()
        .or(navigate)
        .unify()
        .or(clone)
        .unify()
        .or(export)
        .unify()
        .or(hook_events)
        .unify()
        .or(agents)
        .unify()
        .or(status)
        .unify()
        .or(usage)
        .unify()
        .or(metrics)
        .unify()
        .or(terminal_input)
        .unify()
        .or(terminal_resize)
        .unify()
        .or(terminal_screen)
        .unify()
        .or(agent_ops)
        .unify()
        .or(logs)
        .unify()
        .or(agent_paths)
        .unify()
        .or(context_all)
        .unify()
        .or(context_key)
        .unify()
        .or(validate_path)
        .unify()
        .or(validate_paths)
        .unify()
        .or(agent_types)
        .unify()
        .or(analytics)
        .unify()
        .or(system_status)
        .unify()
        .or(events)
        .unify()
        .or(claude_hooks)
        .unify()
        .or(claude_activity)
        .unify()
        .boxed()
}

/// `POST /v1/{signal}`: an OTLP/HTTP export, its body read by the handler (protobuf or
/// JSON, maybe gzip).
fn otlp_route(
    ctx: ApiContext,
    signal: &'static str,
    kind: otlp::Signal,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let path = move || {
        warp::path("v1")
            .and(warp::path(signal))
            .and(warp::path::end())
    };
    path()
        .and(warp::post())
        .and(with_context(ctx))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("content-encoding"))
        .and(warp::body::stream())
        .then(move |ctx, content_type, content_encoding, stream| {
            let headers = otlp::BodyHeaders {
                content_type,
                content_encoding,
            };
            answer(otlp::export(ctx, kind, headers, stream))
        })
        .or(path().and(other_methods("POST")))
        .unify()
}

/// Runs a handler and turns its answer into the envelope.
async fn answer(handler: impl Future<Output = Answer>) -> Response {
    reply(handler.await)
}

/// A JSON body of type `T`, capped at the context's body limit.
fn json_body<T: DeserializeOwned + Send + 'static>(
    ctx: impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Parsed<T>,), Error = Rejection> + Clone {
    ctx.and(warp::body::stream())
        .and(warp::header::optional::<String>("content-type"))
        .then(
            |ctx: ApiContext, stream, content_type: Option<String>| async move {
                let limits = body::Limits {
                    bytes: ctx.max_body_bytes,
                    time: ctx.body_read_timeout,
                };
                body::read_json::<T, _, _>(content_type.as_deref(), stream, limits).await
            },
        )
}

/// `POST /sessions/{id}/{action}` with a JSON body.
fn post_json<T, F, Fut>(
    ctx: impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone + Send + Sync + 'static,
    action: &'static str,
    handler: F,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(ApiContext, String, Parsed<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send,
{
    let path = move || {
        warp::path("sessions")
            .and(warp::path::param::<String>())
            .and(warp::path(action))
            .and(warp::path::end())
    };
    path()
        .and(warp::post())
        .and(ctx.clone())
        .and(json_body(ctx))
        .then(move |id, ctx, body| {
            let handler = handler.clone();
            async move { reply(handler(ctx, id, body).await) }
        })
        .or(path()
            .and(other_methods("POST"))
            .map(|_, response| response))
        .unify()
}

/// `GET /sessions/{id}/{what}`.
fn get_of<F, Fut>(
    ctx: impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone + Send + Sync + 'static,
    what: &'static str,
    handler: F,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    F: Fn(ApiContext, String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send,
{
    let path = move || {
        warp::path("sessions")
            .and(warp::path::param::<String>())
            .and(warp::path(what))
            .and(warp::path::end())
    };
    path()
        .and(get_or_head())
        .and(ctx)
        .then(move |id, ctx| {
            let handler = handler.clone();
            async move { reply(handler(ctx, id).await) }
        })
        .or(path()
            .and(other_methods("GET, HEAD"))
            .map(|_, response| response))
        .unify()
}

/// GET, and HEAD with it (RFC 9110 §9.1: hyper sends HEAD responses without their body).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// Placed after a path's routes: any other method gets a 405 naming the `allow`ed ones.
fn other_methods(
    allow: &'static str,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::any().and_then(move || async move {
        Err::<Response, Rejection>(warp::reject::custom(ApiError::MethodNotAllowed {
            allow: Some(allow),
        }))
    })
}

/// `/ws/sessions` without a valid upgrade: a GET is a bad request, anything else a 405.
fn not_an_upgrade() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method().and_then(|method: Method| async move {
        let error = if method == Method::GET {
            ApiError::Validation {
                message: "a websocket upgrade is required".to_owned(),
                field: None,
            }
        } else {
            ApiError::MethodNotAllowed { allow: Some("GET") }
        };
        Err::<Response, Rejection>(warp::reject::custom(error))
    })
}

fn with_context(
    ctx: ApiContext,
) -> impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}

#[cfg(test)]
mod tests;
