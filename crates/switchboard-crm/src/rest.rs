//! The CRM's REST API and its OpenAPI 3.1 document.
//!
//! Handlers call the same [`CrmStore`] methods as the MCP tools, so validation, idempotency
//! and errors are identical; only the envelope differs. Errors are
//! `{"error":{"kind","message"[,"details"]}}` with 400 (invalid input), 404 (unknown ID),
//! 409 (conflicts) or 500.
//!
//! The OpenAPI document's schemas come from the same schemars derives as the tools' input
//! and output schemas, so the document cannot drift from the types the handlers use.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::CrmError;
use crate::model::*;
use crate::store::CrmStore;

/// Header that carries an idempotency key for POST requests (the body field also works).
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The REST API over `store`: `/api/contacts`, `/api/opportunities`, `/api/pipeline` and
/// `/api/openapi.json`.
pub fn rest_router(store: CrmStore) -> Router {
    Router::new()
        .route("/api/contacts", get(list_contacts).post(create_contact))
        .route("/api/contacts/{id}", get(get_contact).patch(update_contact))
        .route("/api/contacts/{id}/notes", post(add_note))
        .route(
            "/api/opportunities",
            get(list_opportunities).post(create_opportunity),
        )
        .route("/api/opportunities/{id}/stage", patch(update_stage))
        .route("/api/pipeline", get(pipeline))
        .route("/api/openapi.json", get(openapi))
        .with_state(store)
}

/// An error response.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl From<CrmError> for ApiError {
    fn from(err: CrmError) -> Self {
        if err.kind() == "internal" {
            tracing::error!(error = %err, "CRM REST request failed");
        }
        let mut error = json!({ "kind": err.kind(), "message": err.to_string() });
        if let (Some(details), Some(object)) = (err.details(), error.as_object_mut()) {
            object.insert("details".into(), details);
        }
        ApiError {
            status: StatusCode::from_u16(err.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: json!({ "error": error }),
        }
    }
}

impl ApiError {
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": { "kind": "invalid_request", "message": message } }),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<(StatusCode, Json<T>), ApiError>;

fn ok<T: Serialize>(value: T) -> ApiResult<T> {
    Ok((StatusCode::OK, Json(value)))
}

fn created<T: Serialize>(value: T) -> ApiResult<T> {
    Ok((StatusCode::CREATED, Json(value)))
}

/// The `Idempotency-Key` header, if present, overrides the body's `idempotency_key`.
fn header_key(headers: &HeaderMap, body_key: Option<String>) -> Result<Option<String>, ApiError> {
    match headers.get(IDEMPOTENCY_HEADER) {
        None => Ok(body_key),
        Some(value) => value.to_str().map(|key| Some(key.to_owned())).map_err(|_| {
            ApiError::bad_request("the Idempotency-Key header is not visible ASCII".into())
        }),
    }
}

async fn list_contacts(
    State(store): State<CrmStore>,
    query: Result<Query<SearchContactsParams>, QueryRejection>,
) -> ApiResult<ContactPage> {
    let Query(params) = query?;
    ok(store.search_contacts(&params).await?)
}

async fn create_contact(
    State(store): State<CrmStore>,
    headers: HeaderMap,
    body: Result<Json<NewContact>, JsonRejection>,
) -> ApiResult<Contact> {
    let Json(mut input) = body?;
    input.idempotency_key = header_key(&headers, input.idempotency_key.take())?;
    created(store.create_contact(input).await?)
}

async fn get_contact(
    State(store): State<CrmStore>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<ContactDetails> {
    let Path(id) = path?;
    ok(store.get_contact_details(&id).await?)
}

async fn update_contact(
    State(store): State<CrmStore>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ContactPatch>, JsonRejection>,
) -> ApiResult<Contact> {
    let Path(id) = path?;
    let Json(patch) = body?;
    ok(store.update_contact(&id, patch).await?)
}

async fn add_note(
    State(store): State<CrmStore>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Json<NewNote>, JsonRejection>,
) -> ApiResult<Note> {
    let Path(id) = path?;
    let Json(mut note) = body?;
    note.idempotency_key = header_key(&headers, note.idempotency_key.take())?;
    created(store.add_contact_note(&id, note).await?)
}

async fn list_opportunities(
    State(store): State<CrmStore>,
    query: Result<Query<ListOpportunitiesParams>, QueryRejection>,
) -> ApiResult<OpportunityPage> {
    let Query(params) = query?;
    ok(store.list_opportunities(&params).await?)
}

async fn create_opportunity(
    State(store): State<CrmStore>,
    headers: HeaderMap,
    body: Result<Json<NewOpportunity>, JsonRejection>,
) -> ApiResult<Opportunity> {
    let Json(mut input) = body?;
    input.idempotency_key = header_key(&headers, input.idempotency_key.take())?;
    created(store.create_opportunity(input).await?)
}

async fn update_stage(
    State(store): State<CrmStore>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<StageChange>, JsonRejection>,
) -> ApiResult<Opportunity> {
    let Path(id) = path?;
    let Json(change) = body?;
    ok(store.update_opportunity_stage(&id, change).await?)
}

async fn pipeline(State(store): State<CrmStore>) -> ApiResult<PipelineSummary> {
    ok(store.pipeline_summary().await?)
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

// ---------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------

/// Collects component schemas; `$ref`s point into `#/components/schemas`.
struct Components {
    generator: SchemaGenerator,
}

impl Components {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Components {
            generator: settings.into_generator(),
        }
    }

    fn schema<T: JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    /// One `in: query` parameter per property of `T`, taken from its schema.
    fn query_parameters<T: JsonSchema>(&mut self) -> Vec<Value> {
        self.generator.subschema_for::<T>();
        let definition = self
            .generator
            .definitions()
            .get(T::schema_name().as_ref())
            .cloned()
            .unwrap_or(Value::Null);
        let required: Vec<&str> = definition
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = definition.get("properties").and_then(Value::as_object);
        properties
            .into_iter()
            .flatten()
            .map(|(name, schema)| {
                let mut schema = schema.clone();
                let description = schema
                    .as_object_mut()
                    .and_then(|s| s.remove("description"))
                    .unwrap_or(Value::String(String::new()));
                json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&name.as_str()),
                    "description": description,
                    "schema": schema,
                })
            })
            .collect()
    }

    fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        schemas.insert(
            "Error".into(),
            json!({
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["kind", "message"],
                        "properties": {
                            "kind": {
                                "type": "string",
                                "description": "Stable machine-readable kind, e.g. not_found, conflict, version_conflict, invalid_email, invalid_value, invalid_currency, invalid_stage, invalid_status, invalid_probability, invalid_argument, invalid_cursor, invalid_request, idempotency_key_reused, internal."
                            },
                            "message": { "type": "string" },
                            "details": {
                                "type": "object",
                                "description": "Extra data; for version_conflict: expected_version, current_version and the current record."
                            }
                        }
                    }
                }
            }),
        );
        schemas
    }
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn error_response(description: &str) -> Value {
    response(description, json!({ "$ref": "#/components/schemas/Error" }))
}

fn id_parameter(description: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn idempotency_parameter() -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes retries safe: a repeated request with the same key returns the first result. Overrides the body's idempotency_key.",
        "schema": { "type": "string", "minLength": 1, "maxLength": 200 }
    })
}

/// The OpenAPI 3.1 document of [`rest_router`].
pub fn openapi_document() -> Value {
    let mut c = Components::new();
    let contact = c.schema::<Contact>();
    let contact_page = c.schema::<ContactPage>();
    let details = c.schema::<ContactDetails>();
    let opportunity = c.schema::<Opportunity>();
    let opportunity_page = c.schema::<OpportunityPage>();
    let note = c.schema::<Note>();
    let pipeline = c.schema::<PipelineSummary>();
    let new_contact = c.schema::<NewContact>();
    let contact_patch = c.schema::<ContactPatch>();
    let new_note = c.schema::<NewNote>();
    let new_opportunity = c.schema::<NewOpportunity>();
    let stage_change = c.schema::<StageChange>();
    let search_parameters = c.query_parameters::<SearchContactsParams>();
    let list_parameters = c.query_parameters::<ListOpportunitiesParams>();

    let bad = error_response("Invalid input");
    let missing = error_response("Unknown ID");
    let conflict =
        error_response("Conflict: duplicate email, version conflict or reused idempotency key");

    let paths = json!({
        "/api/contacts": {
            "get": {
                "operationId": "searchContacts",
                "summary": "Search contacts by free text and filters, one page at a time",
                "parameters": search_parameters,
                "responses": { "200": response("One page of contacts", contact_page), "400": bad }
            },
            "post": {
                "operationId": "createContact",
                "summary": "Create a contact",
                "parameters": [idempotency_parameter()],
                "requestBody": json_body(new_contact),
                "responses": { "201": response("The new contact (or the first result of a retried request)", contact.clone()), "400": bad, "409": conflict }
            }
        },
        "/api/contacts/{id}": {
            "get": {
                "operationId": "getContactDetails",
                "summary": "A contact with its opportunities and latest notes and interactions",
                "parameters": [id_parameter("Contact ID")],
                "responses": { "200": response("The contact and its timeline", details), "404": missing }
            },
            "patch": {
                "operationId": "updateContact",
                "summary": "Update a contact, guarded by its version",
                "parameters": [id_parameter("Contact ID")],
                "requestBody": json_body(contact_patch),
                "responses": { "200": response("The updated contact", contact), "400": bad, "404": missing, "409": conflict }
            }
        },
        "/api/contacts/{id}/notes": {
            "post": {
                "operationId": "addContactNote",
                "summary": "Append a note to a contact's timeline",
                "parameters": [id_parameter("Contact ID"), idempotency_parameter()],
                "requestBody": json_body(new_note),
                "responses": { "201": response("The new note", note), "400": bad, "404": missing, "409": conflict }
            }
        },
        "/api/opportunities": {
            "get": {
                "operationId": "listOpportunities",
                "summary": "List opportunities with filters, one page at a time",
                "parameters": list_parameters,
                "responses": { "200": response("One page of opportunities", opportunity_page), "400": bad }
            },
            "post": {
                "operationId": "createOpportunity",
                "summary": "Create an opportunity for a contact",
                "parameters": [idempotency_parameter()],
                "requestBody": json_body(new_opportunity),
                "responses": { "201": response("The new opportunity", opportunity.clone()), "400": bad, "404": missing, "409": conflict }
            }
        },
        "/api/opportunities/{id}/stage": {
            "patch": {
                "operationId": "updateOpportunityStage",
                "summary": "Move an opportunity to another stage",
                "parameters": [id_parameter("Opportunity ID")],
                "requestBody": json_body(stage_change),
                "responses": { "200": response("The updated opportunity", opportunity), "400": bad, "404": missing }
            }
        },
        "/api/pipeline": {
            "get": {
                "operationId": "pipelineSummary",
                "summary": "Count, total and weighted value per stage and currency",
                "responses": { "200": response("The pipeline", pipeline) }
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document",
                "responses": { "200": { "description": "The OpenAPI 3.1 document", "content": { "application/json": { "schema": { "type": "object" } } } } }
            }
        }
    });

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard CRM",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Contacts, opportunities, notes and the sales pipeline. The same operations are MCP tools of `switchboard server crm`."
        },
        "paths": paths,
        "components": { "schemas": c.finish() }
    })
}

/// Serves [`rest_router`] on `listener` until the listener fails or the future is dropped.
///
/// Kept here so the CLI needs no HTTP framework of its own. Unlike the MCP endpoint this has
/// no Host/Origin checks: bind it to loopback or put it behind a proxy.
pub async fn serve_rest(store: CrmStore, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, rest_router(store)).await
}
