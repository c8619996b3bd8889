//! The CRM store: every read and write the MCP tools and the REST API perform.
//!
//! There is one code path per operation, whichever front end calls it and whichever engine
//! is behind it. Each query is written once with `$n` placeholders, which both SQLite and
//! PostgreSQL accept; the [`on_read!`] and [`in_write_tx!`] macros expand a body once per
//! engine so sqlx can type it against that engine's pool.
//!
//! Concurrency rules:
//! - Creates with an idempotency key insert a `(tool, key)` row in the same transaction as
//!   the record. The primary key makes concurrent retries collide: the losers wait for the
//!   winner's commit (PostgreSQL row lock, SQLite single writer) and then read back its stored
//!   result, so exactly one record exists and every caller gets the same answer.
//! - `update_contact` is optimistic: `UPDATE … WHERE id = ? AND version = ?`; zero rows
//!   updated means someone else won, and the caller gets the current record.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use crate::db::{self, Backend, Dialect, Money, MoneyKey, Ts, format_ts};
use crate::error::CrmError;
use crate::model::*;
use crate::validate::{self, MAX_LONG_TEXT, MAX_SHORT_TEXT};

/// Default page size of `search_contacts` (the seed tutorial's default).
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;
/// Default page size of `list_opportunities`.
pub const DEFAULT_LIST_LIMIT: u32 = 20;
/// Largest page size of any listing.
pub const MAX_PAGE_SIZE: u32 = 100;
/// How many of the latest notes and interactions `get_contact_details` returns.
pub const DETAIL_TIMELINE_LIMIT: i64 = 20;
/// Default currency of new opportunities.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Where the CRM keeps its data and how it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmConfig {
    /// `sqlite://path`, a bare file path, or `postgres://…`.
    pub database_url: String,
    /// Seed the demo contacts when the database is empty.
    pub demo_data: bool,
    /// Connections in the PostgreSQL pool (SQLite uses one writer and four readers).
    pub max_connections: u32,
}

impl CrmConfig {
    /// The default database: a SQLite file under `./switchboard-data`.
    pub const DEFAULT_DATABASE_URL: &'static str = "sqlite://./switchboard-data/crm.db";

    /// A config for `database_url`, with demo data and 10 PostgreSQL connections.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            demo_data: true,
            max_connections: 10,
        }
    }
}

impl Default for CrmConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DATABASE_URL)
    }
}

/// The CRM's data, on SQLite or PostgreSQL. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct CrmStore {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to a reader pool of whichever engine is behind `$store`.
macro_rules! on_read {
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { read, .. } => {
                let $pool = read;
                #[allow(unused_variables)]
                let $dialect = Dialect::Sqlite;
                $body
            }
            Backend::Postgres(pg) => {
                let $pool = pg;
                #[allow(unused_variables)]
                let $dialect = Dialect::Postgres;
                $body
            }
        }
    };
}

/// Runs `$body` inside a write transaction `$tx`; the body must commit it. On SQLite the
/// transaction starts with `BEGIN IMMEDIATE` so the write lock is taken up front (a deferred
/// transaction that reads first could fail to upgrade).
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident, $dialect:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { write, .. } => {
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                #[allow(unused_variables)]
                let $dialect = Dialect::Sqlite;
                $body
            }
            Backend::Postgres(pg) => {
                let mut $tx = pg.begin().await?;
                #[allow(unused_variables)]
                let $dialect = Dialect::Postgres;
                $body
            }
        }
    };
}

macro_rules! contact_columns {
    () => {
        "id, name, email, phone, company, position, status, tags, created_at, updated_at, last_contact_at, version"
    };
}

macro_rules! opportunity_columns {
    () => {
        "id, contact_id, title, value, currency, stage, probability, expected_close_date, created_at, updated_at"
    };
}

/// Reads one contact by ID inside `$exec` (a pool or `&mut *tx`).
macro_rules! fetch_contact {
    ($exec:expr, $id:expr) => {
        sqlx::query_as::<_, ContactRow>(concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts WHERE id = $1"
        ))
        .bind($id)
        .fetch_optional($exec)
        .await?
        .map(Contact::from)
    };
}

/// Fails with `not_found` unless the contact exists.
macro_rules! require_contact {
    ($exec:expr, $id:expr) => {
        if sqlx::query_scalar::<_, String>("SELECT id FROM contacts WHERE id = $1")
            .bind($id)
            .fetch_optional($exec)
            .await?
            .is_none()
        {
            return Err(not_found_contact($id));
        }
    };
}

/// Claims `(tool, key)` in `$tx`. Yields `None` when this call owns the key, or
/// `Some((request, result))` stored by the call that owned it first.
macro_rules! claim_key {
    ($tx:ident, $tool:expr, $key:expr, $request:expr) => {{
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tool, key, request, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tool, key) DO NOTHING",
        )
        .bind($tool)
        .bind($key)
        .bind($request)
        .bind(Ts(db::now()))
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            None
        } else {
            let stored: (String, Option<Json<serde_json::Value>>) = sqlx::query_as(
                "SELECT request, result FROM idempotency_keys WHERE tool = $1 AND key = $2",
            )
            .bind($tool)
            .bind($key)
            .fetch_one(&mut *$tx)
            .await?;
            Some((stored.0, stored.1.map(|json| json.0)))
        }
    }};
}

/// Stores the result of the call that owns `(tool, key)`.
macro_rules! record_result {
    ($tx:ident, $tool:expr, $key:expr, $output:expr) => {{
        let value = serde_json::to_value($output)
            .map_err(|err| CrmError::Internal(format!("could not store the result: {err}")))?;
        sqlx::query("UPDATE idempotency_keys SET result = $3 WHERE tool = $1 AND key = $2")
            .bind($tool)
            .bind($key)
            .bind(Json(value))
            .execute(&mut *$tx)
            .await?;
    }};
}

/// Turns a unique-constraint violation on contacts into a `conflict`.
fn map_email_conflict(err: sqlx::Error, email: &str) -> CrmError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            CrmError::Conflict(format!("a contact with email {email} already exists"))
        }
        _ => CrmError::Database(err),
    }
}

fn not_found_contact(id: &str) -> CrmError {
    CrmError::NotFound(format!("no contact with id {id:?}"))
}

fn not_found_opportunity(id: &str) -> CrmError {
    CrmError::NotFound(format!("no opportunity with id {id:?}"))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lower-cased name, company and email, matched by `search_contacts`. Lower-casing here
/// (Unicode-aware) rather than in SQL keeps Vietnamese names searchable the same way on both
/// engines (SQLite's `lower()` only folds ASCII).
fn search_text(name: &str, company: Option<&str>, email: &str) -> String {
    format!("{}\n{}\n{}", name, company.unwrap_or(""), email).to_lowercase()
}

/// A `LIKE` pattern matching `text` anywhere, with `\` escaping the wildcards.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn page_size(limit: Option<u32>, default: u32) -> Result<u32, CrmError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(CrmError::invalid(
            "invalid_argument",
            format!("limit must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
        )),
    }
}

/// Cursors are opaque to callers: base64url of a small JSON array tagged with the listing
/// they belong to, so a cursor from one listing is rejected by another.
fn encode_cursor(tag: &str, a: &str, b: &str) -> String {
    let json = serde_json::json!([tag, a, b]).to_string();
    URL_SAFE_NO_PAD.encode(json.as_bytes())
}

fn decode_cursor(tag: &str, cursor: &str) -> Result<(String, String), CrmError> {
    let bad = || {
        CrmError::invalid(
            "invalid_cursor",
            "the cursor is not one this listing issued",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let (found, a, b): (String, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if found != tag {
        return Err(bad());
    }
    Ok((a, b))
}

/// What the store remembers about a request, to tell a retry from a reuse of the key.
fn fingerprint<T: Serialize>(request: &T) -> Result<String, CrmError> {
    serde_json::to_string(request)
        .map_err(|err| CrmError::Internal(format!("could not fingerprint the request: {err}")))
}

/// The stored answer to an earlier call with the same idempotency key.
fn replay<T: DeserializeOwned>(
    tool: &str,
    key: &str,
    request: &str,
    stored: (String, Option<serde_json::Value>),
) -> Result<T, CrmError> {
    let (stored_request, stored_result) = stored;
    if stored_request != request {
        return Err(CrmError::IdempotencyKeyReused {
            tool: tool.to_owned(),
            key: key.to_owned(),
        });
    }
    let result = stored_result.ok_or_else(|| {
        CrmError::Internal(format!(
            "idempotency key {key:?} of {tool} has no stored result"
        ))
    })?;
    serde_json::from_value(result).map_err(|err| {
        CrmError::Internal(format!("the stored result of {tool} is unreadable: {err}"))
    })
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: String,
    name: String,
    email: String,
    phone: Option<String>,
    company: Option<String>,
    position: Option<String>,
    status: String,
    tags: Json<Vec<String>>,
    created_at: Ts,
    updated_at: Ts,
    last_contact_at: Option<Ts>,
    version: i64,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Contact {
            id: row.id,
            name: row.name,
            email: row.email,
            phone: row.phone,
            company: row.company,
            position: row.position,
            status: row.status,
            tags: row.tags.0,
            created_at: format_ts(row.created_at.0),
            updated_at: format_ts(row.updated_at.0),
            last_contact_at: row.last_contact_at.map(|t| format_ts(t.0)),
            version: row.version,
        }
    }
}

#[derive(sqlx::FromRow)]
struct OpportunityRow {
    id: String,
    contact_id: String,
    title: String,
    value: Money,
    currency: String,
    stage: String,
    probability: i32,
    expected_close_date: Option<NaiveDate>,
    created_at: Ts,
    updated_at: Ts,
}

impl From<OpportunityRow> for Opportunity {
    fn from(row: OpportunityRow) -> Self {
        Opportunity {
            id: row.id,
            contact_id: row.contact_id,
            title: row.title,
            value: row.value.0.to_string(),
            currency: row.currency,
            stage: row.stage,
            probability: row.probability,
            expected_close_date: row
                .expected_close_date
                .map(|d| d.format("%Y-%m-%d").to_string()),
            created_at: format_ts(row.created_at.0),
            updated_at: format_ts(row.updated_at.0),
        }
    }
}

#[derive(sqlx::FromRow)]
struct NoteRow {
    id: String,
    contact_id: String,
    body: String,
    author: Option<String>,
    created_at: Ts,
}

impl From<NoteRow> for Note {
    fn from(row: NoteRow) -> Self {
        Note {
            id: row.id,
            contact_id: row.contact_id,
            body: row.body,
            author: row.author,
            created_at: format_ts(row.created_at.0),
        }
    }
}

#[derive(sqlx::FromRow)]
struct InteractionRow {
    id: String,
    contact_id: String,
    kind: String,
    occurred_at: Ts,
    summary: String,
    created_at: Ts,
}

impl From<InteractionRow> for Interaction {
    fn from(row: InteractionRow) -> Self {
        Interaction {
            id: row.id,
            contact_id: row.contact_id,
            kind: row.kind,
            occurred_at: format_ts(row.occurred_at.0),
            summary: row.summary,
            created_at: format_ts(row.created_at.0),
        }
    }
}

/// Numbered placeholders for SQL built from optional filters.
struct Placeholders(usize);

impl Placeholders {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

/// Validated `search_contacts` filters.
struct ContactFilter {
    pattern: Option<String>,
    status: Option<ContactStatus>,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
}

impl ContactFilter {
    /// The `WHERE` conditions, binding in field order.
    fn conditions(&self, p: &mut Placeholders) -> Vec<String> {
        let mut conditions = Vec::new();
        if self.pattern.is_some() {
            conditions.push(format!("search_text LIKE {} ESCAPE '\\'", p.next()));
        }
        if self.status.is_some() {
            conditions.push(format!("status = {}", p.next()));
        }
        if self.before.is_some() {
            conditions.push(format!("last_contact_at < {}", p.next()));
        }
        if self.after.is_some() {
            conditions.push(format!("last_contact_at > {}", p.next()));
        }
        conditions
    }
}

macro_rules! bind_contact_filter {
    ($query:ident, $filter:expr) => {
        if let Some(pattern) = &$filter.pattern {
            $query = $query.bind(pattern.clone());
        }
        if let Some(status) = $filter.status {
            $query = $query.bind(status.as_str());
        }
        if let Some(before) = $filter.before {
            $query = $query.bind(Ts(before));
        }
        if let Some(after) = $filter.after {
            $query = $query.bind(Ts(after));
        }
    };
}

/// Validated `list_opportunities` filters.
struct OpportunityFilter {
    stage: Option<Stage>,
    contact_id: Option<String>,
    currency: Option<String>,
    min: Option<Decimal>,
    max: Option<Decimal>,
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

impl CrmStore {
    /// Opens the database, applies migrations and, if asked and the database has no
    /// contacts, seeds the demo data.
    pub async fn open(config: &CrmConfig) -> Result<Self, CrmError> {
        let backend = db::connect(&config.database_url, config.max_connections).await?;
        let store = CrmStore { backend };
        if config.demo_data {
            store.seed_demo_data().await?;
        }
        Ok(store)
    }

    /// Which engine this store runs on: `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Seeds the tutorial's demo contacts (Nguyễn Văn Anh of Tech Solutions, Trần Thị Bình
    /// of Innovation Hub) and their opportunities, notes and interactions, only when there
    /// are no contacts yet. Every create carries a fixed idempotency key, so replicas that
    /// start together on one PostgreSQL database seed exactly one copy.
    pub async fn seed_demo_data(&self) -> Result<bool, CrmError> {
        let count = on_read!(self, |pool, _d| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM contacts")
                .fetch_one(pool)
                .await?
        });
        if count > 0 {
            return Ok(false);
        }
        let anh = self
            .create_contact(NewContact {
                name: "Nguyễn Văn Anh".into(),
                email: "anh@company.com".into(),
                phone: Some("+84901234567".into()),
                company: Some("Tech Solutions".into()),
                position: Some("CTO".into()),
                status: Some("active".into()),
                tags: Some(vec!["ai".into(), "enterprise".into()]),
                idempotency_key: Some("demo-seed:contact:anh".into()),
            })
            .await?;
        let binh = self
            .create_contact(NewContact {
                name: "Trần Thị Bình".into(),
                email: "binh@startup.vn".into(),
                phone: None,
                company: Some("Innovation Hub".into()),
                position: None,
                status: Some("prospect".into()),
                tags: Some(vec!["startup".into()]),
                idempotency_key: Some("demo-seed:contact:binh".into()),
            })
            .await?;
        self.create_opportunity(NewOpportunity {
            contact_id: anh.id.clone(),
            title: "AI Consulting Project".into(),
            value: Amount("50000".into()),
            currency: Some("USD".into()),
            stage: Some("proposal".into()),
            probability: Some(75),
            expected_close_date: None,
            idempotency_key: Some("demo-seed:opportunity:anh".into()),
        })
        .await?;
        self.create_opportunity(NewOpportunity {
            contact_id: binh.id.clone(),
            title: "Innovation Hub MCP Pilot".into(),
            value: Amount("12000".into()),
            currency: Some("USD".into()),
            stage: Some("qualification".into()),
            probability: Some(25),
            expected_close_date: None,
            idempotency_key: Some("demo-seed:opportunity:binh".into()),
        })
        .await?;
        self.add_contact_note(
            &anh.id,
            NewNote {
                notes: "Quan tâm đến AI solutions. Scheduled demo for next week.".into(),
                author: Some("demo".into()),
                idempotency_key: Some("demo-seed:note:anh".into()),
            },
        )
        .await?;
        self.log_interaction(LogInteractionParams {
            contact_id: anh.id.clone(),
            kind: "meeting".into(),
            summary: "Discussed AI solutions; demo scheduled.".into(),
            occurred_at: Some("2025-01-20T09:00:00Z".into()),
            idempotency_key: Some("demo-seed:interaction:anh".into()),
        })
        .await?;
        self.log_interaction(LogInteractionParams {
            contact_id: binh.id,
            kind: "call".into(),
            summary: "Intro call about the Innovation Hub pilot.".into(),
            occurred_at: Some("2025-01-18T09:00:00Z".into()),
            idempotency_key: Some("demo-seed:interaction:binh".into()),
        })
        .await?;
        Ok(true)
    }

    /// Free-text search over name, company and email with filters, ordered by (name, id)
    /// and paged with an opaque keyset cursor.
    pub async fn search_contacts(
        &self,
        params: &SearchContactsParams,
    ) -> Result<ContactPage, CrmError> {
        let limit = page_size(params.limit, DEFAULT_SEARCH_LIMIT)?;
        let filter = ContactFilter {
            pattern: params
                .query
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(like_pattern),
            status: params
                .status
                .as_deref()
                .map(ContactStatus::parse)
                .transpose()?,
            before: params
                .last_contact_before
                .as_deref()
                .map(|t| validate::timestamp("last_contact_before", t))
                .transpose()?,
            after: params
                .last_contact_after
                .as_deref()
                .map(|t| validate::timestamp("last_contact_after", t))
                .transpose()?,
        };
        let cursor = params
            .cursor
            .as_deref()
            .map(|c| decode_cursor("contacts", c))
            .transpose()?;

        let mut p = Placeholders(0);
        let count_sql = format!(
            "SELECT COUNT(*) FROM contacts{}",
            where_clause(&filter.conditions(&mut p))
        );
        let mut p = Placeholders(0);
        let mut conditions = filter.conditions(&mut p);
        if cursor.is_some() {
            conditions.push(format!("(name, id) > ({}, {})", p.next(), p.next()));
        }
        let page_sql = format!(
            "SELECT {} FROM contacts{} ORDER BY name, id LIMIT {}",
            contact_columns!(),
            where_clause(&conditions),
            p.next()
        );

        let (total_found, rows) = on_read!(self, |pool, _d| {
            let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
            bind_contact_filter!(count, filter);
            let total = count.fetch_one(pool).await?;
            let mut page = sqlx::query_as::<_, ContactRow>(AssertSqlSafe(page_sql));
            bind_contact_filter!(page, filter);
            if let Some((name, id)) = &cursor {
                page = page.bind(name.clone()).bind(id.clone());
            }
            // One extra row tells whether there is a next page.
            let rows = page.bind(i64::from(limit) + 1).fetch_all(pool).await?;
            (total, rows)
        });

        let mut contacts: Vec<Contact> = rows.into_iter().map(Contact::from).collect();
        let next_cursor = if contacts.len() > limit as usize {
            contacts.truncate(limit as usize);
            contacts
                .last()
                .map(|c| encode_cursor("contacts", &c.name, &c.id))
        } else {
            None
        };
        Ok(ContactPage {
            contacts,
            total_found,
            next_cursor,
        })
    }

    /// One contact with all its opportunities and its latest notes and interactions.
    pub async fn get_contact_details(&self, contact_id: &str) -> Result<ContactDetails, CrmError> {
        on_read!(self, |pool, _d| {
            let contact =
                fetch_contact!(pool, contact_id).ok_or_else(|| not_found_contact(contact_id))?;
            let opportunities = sqlx::query_as::<_, OpportunityRow>(concat!(
                "SELECT ",
                opportunity_columns!(),
                " FROM opportunities WHERE contact_id = $1 ORDER BY created_at, id"
            ))
            .bind(contact_id)
            .fetch_all(pool)
            .await?;
            let notes = sqlx::query_as::<_, NoteRow>(
                "SELECT id, contact_id, body, author, created_at FROM notes \
                 WHERE contact_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(contact_id)
            .bind(DETAIL_TIMELINE_LIMIT)
            .fetch_all(pool)
            .await?;
            let interactions = sqlx::query_as::<_, InteractionRow>(
                "SELECT id, contact_id, kind, occurred_at, summary, created_at FROM interactions \
                 WHERE contact_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
            )
            .bind(contact_id)
            .bind(DETAIL_TIMELINE_LIMIT)
            .fetch_all(pool)
            .await?;
            Ok(ContactDetails {
                contact,
                opportunities: opportunities.into_iter().map(Opportunity::from).collect(),
                notes: notes.into_iter().map(Note::from).collect(),
                interactions: interactions.into_iter().map(Interaction::from).collect(),
            })
        })
    }

    /// Creates a contact. With an idempotency key, a retry returns the first result.
    pub async fn create_contact(&self, input: NewContact) -> Result<Contact, CrmError> {
        const TOOL: &str = "create_contact";
        let name = validate::required_text("name", &input.name, MAX_SHORT_TEXT)?;
        let email = validate::email(&input.email)?;
        let phone = validate::optional_text("phone", input.phone.as_deref(), MAX_SHORT_TEXT)?;
        let company = validate::optional_text("company", input.company.as_deref(), MAX_SHORT_TEXT)?;
        let position =
            validate::optional_text("position", input.position.as_deref(), MAX_SHORT_TEXT)?;
        let status = match input.status.as_deref() {
            Some(status) => ContactStatus::parse(status)?,
            None => ContactStatus::Lead,
        };
        let tags = validate::tags(input.tags.as_deref().unwrap_or_default())?;
        let key = input
            .idempotency_key
            .as_deref()
            .map(validate::idempotency_key)
            .transpose()?;
        let request = fingerprint(&input)?;

        let now = db::now();
        let contact = Contact {
            id: new_id(),
            name,
            email,
            phone,
            company,
            position,
            status: status.as_str().to_owned(),
            tags,
            created_at: format_ts(now),
            updated_at: format_ts(now),
            last_contact_at: None,
            version: 1,
        };
        in_write_tx!(self, |tx, _d| {
            if let Some(key) = &key
                && let Some(stored) = claim_key!(tx, TOOL, key, &request)
            {
                return replay(TOOL, key, &request, stored);
            }
            sqlx::query(
                "INSERT INTO contacts (id, name, email, phone, company, position, status, tags, \
                 search_text, created_at, updated_at, last_contact_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, NULL, 1)",
            )
            .bind(&contact.id)
            .bind(&contact.name)
            .bind(&contact.email)
            .bind(&contact.phone)
            .bind(&contact.company)
            .bind(&contact.position)
            .bind(&contact.status)
            .bind(Json(&contact.tags))
            .bind(search_text(
                &contact.name,
                contact.company.as_deref(),
                &contact.email,
            ))
            .bind(Ts(now))
            .execute(&mut *tx)
            .await
            .map_err(|err| map_email_conflict(err, &contact.email))?;
            if let Some(key) = &key {
                record_result!(tx, TOOL, key, &contact);
            }
            tx.commit().await?;
            Ok(contact)
        })
    }

    /// Updates a contact if it is still at `patch.version`; otherwise fails with
    /// `version_conflict` carrying the current record.
    pub async fn update_contact(
        &self,
        contact_id: &str,
        patch: ContactPatch,
    ) -> Result<Contact, CrmError> {
        let name = patch
            .name
            .as_deref()
            .map(|n| validate::required_text("name", n, MAX_SHORT_TEXT))
            .transpose()?;
        let email = patch.email.as_deref().map(validate::email).transpose()?;
        let phone = patch
            .phone
            .as_deref()
            .map(|v| validate::optional_text("phone", Some(v), MAX_SHORT_TEXT))
            .transpose()?;
        let company = patch
            .company
            .as_deref()
            .map(|v| validate::optional_text("company", Some(v), MAX_SHORT_TEXT))
            .transpose()?;
        let position = patch
            .position
            .as_deref()
            .map(|v| validate::optional_text("position", Some(v), MAX_SHORT_TEXT))
            .transpose()?;
        let status = patch
            .status
            .as_deref()
            .map(ContactStatus::parse)
            .transpose()?;
        let tags = patch.tags.as_deref().map(validate::tags).transpose()?;

        let version_conflict = |current: Contact| -> CrmError {
            let current_version = current.version;
            let current = serde_json::to_value(&current).unwrap_or(serde_json::Value::Null);
            CrmError::VersionConflict {
                id: contact_id.to_owned(),
                expected_version: patch.version,
                current_version,
                current: Box::new(current),
            }
        };

        let now = db::now();
        in_write_tx!(self, |tx, _d| {
            let current = fetch_contact!(&mut *tx, contact_id)
                .ok_or_else(|| not_found_contact(contact_id))?;
            if current.version != patch.version {
                return Err(version_conflict(current));
            }
            let updated = Contact {
                id: current.id.clone(),
                name: name.clone().unwrap_or(current.name.clone()),
                email: email.clone().unwrap_or(current.email.clone()),
                phone: phone.clone().unwrap_or(current.phone.clone()),
                company: company.clone().unwrap_or(current.company.clone()),
                position: position.clone().unwrap_or(current.position.clone()),
                status: status
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or(current.status.clone()),
                tags: tags.clone().unwrap_or(current.tags.clone()),
                created_at: current.created_at.clone(),
                updated_at: format_ts(now),
                last_contact_at: current.last_contact_at.clone(),
                version: current.version + 1,
            };
            let changed = sqlx::query(
                "UPDATE contacts SET name = $3, email = $4, phone = $5, company = $6, position = $7, \
                 status = $8, tags = $9, search_text = $10, updated_at = $11, version = version + 1 \
                 WHERE id = $1 AND version = $2",
            )
            .bind(contact_id)
            .bind(patch.version)
            .bind(&updated.name)
            .bind(&updated.email)
            .bind(&updated.phone)
            .bind(&updated.company)
            .bind(&updated.position)
            .bind(&updated.status)
            .bind(Json(&updated.tags))
            .bind(search_text(&updated.name, updated.company.as_deref(), &updated.email))
            .bind(Ts(now))
            .execute(&mut *tx)
            .await
            .map_err(|err| map_email_conflict(err, &updated.email))?
            .rows_affected();
            if changed == 0 {
                // On PostgreSQL a concurrent update committed between our read and write;
                // report what is there now.
                let current = fetch_contact!(&mut *tx, contact_id)
                    .ok_or_else(|| not_found_contact(contact_id))?;
                return Err(version_conflict(current));
            }
            tx.commit().await?;
            Ok(updated)
        })
    }

    /// Creates an opportunity for an existing contact.
    pub async fn create_opportunity(&self, input: NewOpportunity) -> Result<Opportunity, CrmError> {
        const TOOL: &str = "create_opportunity";
        let title = validate::required_text("title", &input.title, MAX_SHORT_TEXT)?;
        let value = validate::amount("value", &input.value.0)?;
        let currency = validate::currency(input.currency.as_deref().unwrap_or(DEFAULT_CURRENCY))?;
        let stage = match input.stage.as_deref() {
            Some(stage) => Stage::parse(stage)?,
            None => Stage::Prospecting,
        };
        let probability =
            validate::probability(input.probability.unwrap_or(stage.default_probability()))?;
        let close = input
            .expected_close_date
            .as_deref()
            .map(|d| validate::date("expected_close_date", d))
            .transpose()?;
        let key = input
            .idempotency_key
            .as_deref()
            .map(validate::idempotency_key)
            .transpose()?;
        let request = fingerprint(&input)?;

        let now = db::now();
        let opportunity = Opportunity {
            id: new_id(),
            contact_id: input.contact_id.clone(),
            title,
            value: value.to_string(),
            currency,
            stage: stage.as_str().to_owned(),
            probability,
            expected_close_date: close.map(|d| d.format("%Y-%m-%d").to_string()),
            created_at: format_ts(now),
            updated_at: format_ts(now),
        };
        in_write_tx!(self, |tx, dialect| {
            if let Some(key) = &key
                && let Some(stored) = claim_key!(tx, TOOL, key, &request)
            {
                return replay(TOOL, key, &request, stored);
            }
            require_contact!(&mut *tx, &input.contact_id);
            let insert = match dialect {
                Dialect::Sqlite => {
                    "INSERT INTO opportunities (id, contact_id, title, value, currency, stage, probability, \
                     expected_close_date, created_at, updated_at, value_sort) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)"
                }
                Dialect::Postgres => {
                    "INSERT INTO opportunities (id, contact_id, title, value, currency, stage, probability, \
                     expected_close_date, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
                }
            };
            let mut query = sqlx::query(insert)
                .bind(&opportunity.id)
                .bind(&opportunity.contact_id)
                .bind(&opportunity.title)
                .bind(Money(value))
                .bind(&opportunity.currency)
                .bind(&opportunity.stage)
                .bind(probability)
                .bind(close)
                .bind(Ts(now));
            if dialect == Dialect::Sqlite {
                query = query.bind(MoneyKey(value));
            }
            query.execute(&mut *tx).await?;
            if let Some(key) = &key {
                record_result!(tx, TOOL, key, &opportunity);
            }
            tx.commit().await?;
            Ok(opportunity)
        })
    }

    /// Moves an opportunity to `change.stage`, with the given or the stage's default
    /// probability.
    pub async fn update_opportunity_stage(
        &self,
        opportunity_id: &str,
        change: StageChange,
    ) -> Result<Opportunity, CrmError> {
        let stage = Stage::parse(&change.stage)?;
        let probability =
            validate::probability(change.probability.unwrap_or(stage.default_probability()))?;
        let now = db::now();
        in_write_tx!(self, |tx, _d| {
            let changed = sqlx::query(
                "UPDATE opportunities SET stage = $2, probability = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(opportunity_id)
            .bind(stage.as_str())
            .bind(probability)
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                return Err(not_found_opportunity(opportunity_id));
            }
            let row = sqlx::query_as::<_, OpportunityRow>(concat!(
                "SELECT ",
                opportunity_columns!(),
                " FROM opportunities WHERE id = $1"
            ))
            .bind(opportunity_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Opportunity::from(row))
        })
    }

    /// Opportunities matching the filters, oldest first, paged with an opaque cursor.
    pub async fn list_opportunities(
        &self,
        params: &ListOpportunitiesParams,
    ) -> Result<OpportunityPage, CrmError> {
        let limit = page_size(params.limit, DEFAULT_LIST_LIMIT)?;
        let filter = OpportunityFilter {
            stage: params.stage.as_deref().map(Stage::parse).transpose()?,
            contact_id: params.contact_id.clone(),
            currency: params
                .currency
                .as_deref()
                .map(validate::currency)
                .transpose()?,
            min: params
                .min_value
                .as_ref()
                .map(|v| validate::amount("min_value", &v.0))
                .transpose()?,
            max: params
                .max_value
                .as_ref()
                .map(|v| validate::amount("max_value", &v.0))
                .transpose()?,
        };
        let cursor = match params.cursor.as_deref() {
            Some(cursor) => {
                let (created, id) = decode_cursor("opportunities", cursor)?;
                let created = validate::timestamp("cursor", &created).map_err(|_| {
                    CrmError::invalid(
                        "invalid_cursor",
                        "the cursor is not one this listing issued",
                    )
                })?;
                Some((created, id))
            }
            None => None,
        };

        let rows = on_read!(self, |pool, dialect| {
            let mut p = Placeholders(0);
            let mut conditions = Vec::new();
            if filter.stage.is_some() {
                conditions.push(format!("stage = {}", p.next()));
            }
            if filter.contact_id.is_some() {
                conditions.push(format!("contact_id = {}", p.next()));
            }
            if filter.currency.is_some() {
                conditions.push(format!("currency = {}", p.next()));
            }
            if filter.min.is_some() {
                conditions.push(format!("{} >= {}", dialect.value_sort_column(), p.next()));
            }
            if filter.max.is_some() {
                conditions.push(format!("{} <= {}", dialect.value_sort_column(), p.next()));
            }
            if cursor.is_some() {
                conditions.push(format!("(created_at, id) > ({}, {})", p.next(), p.next()));
            }
            let sql = format!(
                "SELECT {} FROM opportunities{} ORDER BY created_at, id LIMIT {}",
                opportunity_columns!(),
                where_clause(&conditions),
                p.next()
            );
            let mut query = sqlx::query_as::<_, OpportunityRow>(AssertSqlSafe(sql));
            if let Some(stage) = filter.stage {
                query = query.bind(stage.as_str());
            }
            if let Some(contact_id) = &filter.contact_id {
                query = query.bind(contact_id.clone());
            }
            if let Some(currency) = &filter.currency {
                query = query.bind(currency.clone());
            }
            if let Some(min) = filter.min {
                query = query.bind(MoneyKey(min));
            }
            if let Some(max) = filter.max {
                query = query.bind(MoneyKey(max));
            }
            if let Some((created, id)) = &cursor {
                query = query.bind(Ts(*created)).bind(id.clone());
            }
            query.bind(i64::from(limit) + 1).fetch_all(pool).await?
        });

        let mut opportunities: Vec<Opportunity> = rows.into_iter().map(Opportunity::from).collect();
        let next_cursor = if opportunities.len() > limit as usize {
            opportunities.truncate(limit as usize);
            opportunities
                .last()
                .map(|o| encode_cursor("opportunities", &o.created_at, &o.id))
        } else {
            None
        };
        Ok(OpportunityPage {
            opportunities,
            next_cursor,
        })
    }

    /// Appends a note to a contact's timeline (earlier notes are never changed).
    pub async fn add_contact_note(
        &self,
        contact_id: &str,
        input: NewNote,
    ) -> Result<Note, CrmError> {
        // Shared by `add_contact_note` and its alias `update_contact_notes`, so a retry
        // through either tool finds the first result.
        const TOOL: &str = "add_contact_note";
        let body = validate::required_text("notes", &input.notes, MAX_LONG_TEXT)?;
        let author = validate::optional_text("author", input.author.as_deref(), MAX_SHORT_TEXT)?;
        let key = input
            .idempotency_key
            .as_deref()
            .map(validate::idempotency_key)
            .transpose()?;
        let request = fingerprint(&(contact_id, &input))?;
        let now = db::now();
        let note = Note {
            id: new_id(),
            contact_id: contact_id.to_owned(),
            body,
            author,
            created_at: format_ts(now),
        };
        in_write_tx!(self, |tx, _d| {
            if let Some(key) = &key
                && let Some(stored) = claim_key!(tx, TOOL, key, &request)
            {
                return replay(TOOL, key, &request, stored);
            }
            require_contact!(&mut *tx, contact_id);
            sqlx::query("INSERT INTO notes (id, contact_id, body, author, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&note.id)
                .bind(&note.contact_id)
                .bind(&note.body)
                .bind(&note.author)
                .bind(Ts(now))
                .execute(&mut *tx)
                .await?;
            if let Some(key) = &key {
                record_result!(tx, TOOL, key, &note);
            }
            tx.commit().await?;
            Ok(note)
        })
    }

    /// Logs a call, email or meeting and moves the contact's `last_contact_at` forward to it
    /// (never backwards, so logging an old meeting late does not hide a newer one).
    pub async fn log_interaction(
        &self,
        input: LogInteractionParams,
    ) -> Result<Interaction, CrmError> {
        const TOOL: &str = "log_interaction";
        let kind = InteractionKind::parse(&input.kind)?;
        let summary = validate::required_text("summary", &input.summary, MAX_LONG_TEXT)?;
        let now = db::now();
        let occurred = match input.occurred_at.as_deref() {
            Some(time) => validate::timestamp("occurred_at", time)?,
            None => now,
        };
        let key = input
            .idempotency_key
            .as_deref()
            .map(validate::idempotency_key)
            .transpose()?;
        let request = fingerprint(&input)?;
        let interaction = Interaction {
            id: new_id(),
            contact_id: input.contact_id.clone(),
            kind: kind.as_str().to_owned(),
            occurred_at: format_ts(occurred),
            summary,
            created_at: format_ts(now),
        };
        in_write_tx!(self, |tx, _d| {
            if let Some(key) = &key
                && let Some(stored) = claim_key!(tx, TOOL, key, &request)
            {
                return replay(TOOL, key, &request, stored);
            }
            require_contact!(&mut *tx, &input.contact_id);
            sqlx::query(
                "INSERT INTO interactions (id, contact_id, kind, occurred_at, summary, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&interaction.id)
            .bind(&interaction.contact_id)
            .bind(&interaction.kind)
            .bind(Ts(occurred))
            .bind(&interaction.summary)
            .bind(Ts(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE contacts SET last_contact_at = $2 \
                 WHERE id = $1 AND (last_contact_at IS NULL OR last_contact_at < $2)",
            )
            .bind(&interaction.contact_id)
            .bind(Ts(occurred))
            .execute(&mut *tx)
            .await?;
            if let Some(key) = &key {
                record_result!(tx, TOOL, key, &interaction);
            }
            tx.commit().await?;
            Ok(interaction)
        })
    }

    /// Count, total and probability-weighted value per stage and currency, in exact decimals.
    ///
    /// Summed here rather than in SQL because SQLite has no exact decimal arithmetic.
    pub async fn pipeline_summary(&self) -> Result<PipelineSummary, CrmError> {
        let rows: Vec<(String, String, Money, i32)> = on_read!(self, |pool, _d| {
            sqlx::query_as("SELECT stage, currency, value, probability FROM opportunities")
                .fetch_all(pool)
                .await?
        });
        let overflow = || CrmError::Internal("pipeline totals overflowed".into());
        let mut totals: BTreeMap<(Stage, String), (i64, Decimal, Decimal)> = BTreeMap::new();
        for (stage, currency, value, probability) in rows {
            let stage = Stage::parse(&stage)?;
            let entry =
                totals
                    .entry((stage, currency))
                    .or_insert((0, Decimal::ZERO, Decimal::ZERO));
            entry.0 += 1;
            entry.1 = entry.1.checked_add(value.0).ok_or_else(overflow)?;
            let weighted = value
                .0
                .checked_mul(Decimal::from(probability))
                .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
                .ok_or_else(overflow)?;
            entry.2 = entry.2.checked_add(weighted).ok_or_else(overflow)?;
        }
        Ok(PipelineSummary {
            stages: totals
                .into_iter()
                .map(
                    |((stage, currency), (count, total, weighted))| PipelineRow {
                        stage: stage.as_str().to_owned(),
                        currency,
                        count,
                        total_value: total.to_string(),
                        weighted_value: weighted.normalize().to_string(),
                    },
                )
                .collect(),
        })
    }
}
