//! `GET /openapi.json`: the API described as OpenAPI 3.1, generated once (at the first
//! request) from the wire types themselves — every payload, request body and the failure
//! envelope derives `utoipa::ToSchema`, so the document cannot drift from what the handlers
//! serialize. `tests/api/main.rs` checks that every route of `api::routes` is described and
//! answers as described; `scripts/schemathesis.sh` checks real responses against the document.
//!
//! - this file: the document, and how a route is added (`Doc`);
//! - `routes.rs`: the route table — each route with its parameters, request body, success
//!   payload and the error statuses it can answer;
//! - `parts.rs`: envelopes, failure responses, links and parameters;
//! - `domain.rs`: the schemas of the domain types that go on the wire as they are, which the
//!   domain modules do not derive themselves (they know nothing of OpenAPI).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ComponentsBuilder, ObjectBuilder, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ServerBuilder, Tag,
};
use utoipa::ToSchema;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::dto::ErrorEnvelope;
use parts::{failure, session_links, success, unhealthy_response, STORES};

mod domain;
mod parts;
mod routes;

/// The document as served, built on first use.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_json().unwrap_or_default());

pub(crate) async fn serve() -> Response {
    let mut response = Response::new(DOCUMENT.as_str().into());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

const SESSION: &str = "/api/claude/sessions/{id}";

/// The whole document.
pub(crate) fn document() -> OpenApi {
    let mut doc = Doc::default();
    doc.routes();
    let components = ComponentsBuilder::new()
        .schemas_from_iter(std::mem::take(&mut doc.schemas))
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "server.token; required on every route but GET /health when set. \
                         A WebSocket client may send it as the subprotocol `bearer, <token>`.",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("session-manager")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Supervisor for Claude Code work sessions. Every JSON response is the \
                     envelope {success, timestamp, error, data} with the payload's keys also \
                     at the top level; a failure is {success: false, timestamp, error, \
                     error_code, details?}. GET routes answer HEAD too; any method a path \
                     does not list is a 405 (`method_not_allowed`) with an Allow header, an \
                     unknown path a 404 (`not_found`).",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .paths(doc.paths)
        .components(Some(components))
        .security(Some([
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .tags(Some(
            ["sessions", "agents", "context", "events", "paths", "system"].map(Tag::new),
        ))
        .build()
}

/// The paths and the schemas they reference, as they are added.
#[derive(Default)]
struct Doc {
    paths: Paths,
    schemas: BTreeMap<String, RefOr<Schema>>,
}

impl Doc {
    /// Registers `T` and every schema it references; returns a reference to it.
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut found = Vec::new();
        T::schemas(&mut found);
        self.schemas.extend(found);
        self.schemas.insert(T::name().into_owned(), T::schema());
        Ref::from_schema_name(T::name()).into()
    }

    /// A success envelope around the payload `T`: its keys at the top level and under `data`.
    fn envelope<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let payload = self.schema::<T>();
        self.schemas.entry("Success".into()).or_insert_with(success);
        AllOfBuilder::new()
            .item(Ref::from_schema_name("Success"))
            .item(payload.clone())
            .item(
                ObjectBuilder::new()
                    .property("data", payload)
                    .required("data"),
            )
            .into()
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        method: HttpMethod,
        path: &str,
        id: &str,
        tag: &str,
        summary: &str,
        parameters: Vec<utoipa::openapi::path::Parameter>,
        body: Option<RefOr<Schema>>,
        ok: (&str, utoipa::openapi::Response),
        errors: &[u16],
    ) {
        self.schema::<ErrorEnvelope>();
        let public = path == "/health";
        // `/health` answers 503 with its own payload when storage cannot write (and with
        // the failure envelope while the server drains).
        let unhealthy = public.then(|| unhealthy_response(&ok.1));
        let mut operation = OperationBuilder::new()
            .operation_id(Some(id))
            .tag(tag)
            .summary(Some(summary))
            .parameters(Some(parameters))
            .response(ok.0, ok.1);
        if let Some(schema) = body {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(schema)).build(),
                    )
                    .build(),
            ));
        }
        let mut statuses: Vec<u16> = errors.to_vec();
        // Every route sits behind the guards (and may fail inside): the framing guard's 400
        // and 431 included.
        statuses.extend([400, 403, 429, 431, 500, 503]);
        if !public {
            statuses.push(401);
        }
        // A write storage refuses for a full disk (storage_full).
        if STORES.contains(&id) {
            statuses.push(507);
        }
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            let response = match (&unhealthy, status) {
                (Some(unhealthy), 503) => unhealthy.clone(),
                _ => failure(status),
            };
            operation = operation.response(status.to_string(), response);
        }
        if public {
            operation = operation.security(SecurityRequirement::default());
        }
        self.paths
            .add_path_operation(path, vec![method], operation.build());
    }

    /// A JSON route under the envelope.
    #[allow(clippy::too_many_arguments)]
    fn json<T: ToSchema>(
        &mut self,
        method: HttpMethod,
        path: &str,
        id: &str,
        tag: &str,
        summary: &str,
        parameters: Vec<utoipa::openapi::path::Parameter>,
        body: Option<RefOr<Schema>>,
        status: u16,
        errors: &[u16],
    ) {
        let schema = self.envelope::<T>();
        let mut response = ResponseBuilder::new().description(summary).content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
        if status == 201 && T::name() == "SessionPayload" {
            response = session_links(response);
        }
        if id == "putContextKey" {
            for operation in ["getContextKey", "deleteContextKey"] {
                response = response.link(
                    operation,
                    LinkBuilder::new()
                        .operation_id(operation)
                        .parameter("id", "$response.body#/session_id")
                        .parameter("key", "$response.body#/key")
                        .build(),
                );
            }
        }
        let (errors, body_errors): (Vec<u16>, &[u16]) = match body {
            Some(_) => (errors.to_vec(), &[400, 408, 413, 415]),
            None => (errors.to_vec(), &[]),
        };
        // A route on one session: its id may name none (404) or a segment may not decode
        // (400), and the session may be terminated or end under the request (409).
        let session: &[u16] = if path.contains("{id}") {
            &[400, 404, 409]
        } else {
            &[]
        };
        let errors: Vec<u16> = errors
            .iter()
            .chain(body_errors)
            .chain(session)
            .copied()
            .collect();
        self.route(
            method,
            path,
            id,
            tag,
            summary,
            parameters,
            body,
            (&status.to_string(), response.build()),
            &errors,
        );
    }
}
