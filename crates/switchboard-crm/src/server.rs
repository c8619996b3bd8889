//! The CRM as an MCP server: one tool per store operation.
//!
//! Tools are thin: they pass their arguments to [`CrmStore`] and render its answer with
//! `switchboard_core::success`, or its error as a tool error with a stable `kind`. Nothing
//! here validates or touches the database, so the REST API behaves the same.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use switchboard_core::{ToolOutput, output_schema, success};

use crate::error::CrmError;
use crate::model::*;
use crate::store::CrmStore;

/// The CRM MCP server. Cloning is cheap (the store's pools and the tool table are shared),
/// as the HTTP transport clones one per session.
#[derive(Clone)]
pub struct CrmServer {
    store: CrmStore,
    tool_router: Arc<ToolRouter<CrmServer>>,
}

impl std::fmt::Debug for CrmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmServer")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn answer<T: ToolOutput>(tool: &str, result: Result<T, CrmError>) -> CallToolResult {
    match result {
        Ok(output) => success(&output),
        Err(err) => {
            if err.kind() == "internal" {
                tracing::error!(tool, error = %err, "CRM tool failed");
            }
            err.to_tool_result()
        }
    }
}

#[tool_router(router = tool_router)]
impl CrmServer {
    /// A server over `store`.
    pub fn new(store: CrmStore) -> Self {
        Self {
            store,
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    /// The store behind this server.
    pub fn store(&self) -> &CrmStore {
        &self.store
    }

    #[tool(
        name = "search_contacts",
        description = "Search contacts by free text (name, company, email) with optional status and last-contact filters. Returns one page (default 10, max 100) and a next_cursor to continue.",
        annotations(title = "Search contacts", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<ContactPage>()
    )]
    async fn search_contacts(
        &self,
        Parameters(params): Parameters<SearchContactsParams>,
    ) -> CallToolResult {
        answer("search_contacts", self.store.search_contacts(&params).await)
    }

    #[tool(
        name = "get_contact_details",
        description = "Get one contact with all its opportunities and its latest 20 notes and interactions.",
        annotations(title = "Contact details", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<ContactDetails>()
    )]
    async fn get_contact_details(
        &self,
        Parameters(params): Parameters<ContactIdParams>,
    ) -> CallToolResult {
        answer(
            "get_contact_details",
            self.store.get_contact_details(&params.contact_id).await,
        )
    }

    #[tool(
        name = "create_contact",
        description = "Create a contact. Email must be unique (case-insensitive). Pass an idempotency_key to make retries safe.",
        annotations(title = "Create contact", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Contact>()
    )]
    async fn create_contact(&self, Parameters(params): Parameters<NewContact>) -> CallToolResult {
        answer("create_contact", self.store.create_contact(params).await)
    }

    #[tool(
        name = "update_contact",
        description = "Update a contact's fields. Pass the version you read; if the contact changed since, the call fails with version_conflict and returns the current record and version.",
        annotations(title = "Update contact", read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Contact>()
    )]
    async fn update_contact(
        &self,
        Parameters(params): Parameters<UpdateContactParams>,
    ) -> CallToolResult {
        answer(
            "update_contact",
            self.store
                .update_contact(&params.contact_id, params.patch)
                .await,
        )
    }

    #[tool(
        name = "create_opportunity",
        description = "Create a sales opportunity for a contact. value is an exact decimal (send a string), currency an ISO 4217 code (default USD), stage defaults to prospecting. Pass an idempotency_key to make retries safe.",
        annotations(title = "Create opportunity", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Opportunity>()
    )]
    async fn create_opportunity(
        &self,
        Parameters(params): Parameters<NewOpportunity>,
    ) -> CallToolResult {
        answer(
            "create_opportunity",
            self.store.create_opportunity(params).await,
        )
    }

    #[tool(
        name = "update_opportunity_stage",
        description = "Move an opportunity to another stage (prospecting, qualification, proposal, negotiation, won, lost), optionally with a new probability.",
        annotations(title = "Update opportunity stage", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<Opportunity>()
    )]
    async fn update_opportunity_stage(
        &self,
        Parameters(params): Parameters<UpdateStageParams>,
    ) -> CallToolResult {
        answer(
            "update_opportunity_stage",
            self.store
                .update_opportunity_stage(&params.opportunity_id, params.change)
                .await,
        )
    }

    #[tool(
        name = "list_opportunities",
        description = "List opportunities, oldest first, filtered by stage, contact, currency and min/max value. Returns one page (default 20, max 100) and a next_cursor.",
        annotations(title = "List opportunities", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<OpportunityPage>()
    )]
    async fn list_opportunities(
        &self,
        Parameters(params): Parameters<ListOpportunitiesParams>,
    ) -> CallToolResult {
        answer(
            "list_opportunities",
            self.store.list_opportunities(&params).await,
        )
    }

    #[tool(
        name = "add_contact_note",
        description = "Append a note to a contact's timeline. Notes are never overwritten. Pass an idempotency_key to make retries safe.",
        annotations(title = "Add contact note", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Note>()
    )]
    async fn add_contact_note(
        &self,
        Parameters(params): Parameters<AddNoteParams>,
    ) -> CallToolResult {
        answer(
            "add_contact_note",
            self.store
                .add_contact_note(&params.contact_id, params.note)
                .await,
        )
    }

    #[tool(
        name = "update_contact_notes",
        description = "Alias of add_contact_note, kept for clients of the earlier CRM: appends the note to the contact's timeline (it does not overwrite earlier notes).",
        annotations(title = "Add contact note (alias)", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Note>()
    )]
    async fn update_contact_notes(
        &self,
        Parameters(params): Parameters<AddNoteParams>,
    ) -> CallToolResult {
        answer(
            "update_contact_notes",
            self.store
                .add_contact_note(&params.contact_id, params.note)
                .await,
        )
    }

    #[tool(
        name = "log_interaction",
        description = "Log a call, email or meeting with a contact (default time: now) and move the contact's last_contact_at forward. Pass an idempotency_key to make retries safe.",
        annotations(title = "Log interaction", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false),
        output_schema = output_schema::<Interaction>()
    )]
    async fn log_interaction(
        &self,
        Parameters(params): Parameters<LogInteractionParams>,
    ) -> CallToolResult {
        answer("log_interaction", self.store.log_interaction(params).await)
    }

    #[tool(
        name = "pipeline_summary",
        description = "Count, total value and probability-weighted value of opportunities per stage and currency, as exact decimals.",
        annotations(title = "Pipeline summary", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = output_schema::<PipelineSummary>()
    )]
    async fn pipeline_summary(&self) -> CallToolResult {
        answer("pipeline_summary", self.store.pipeline_summary().await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CrmServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "switchboard-crm",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A CRM: contacts, sales opportunities, an append-only notes timeline and logged \
                 interactions. Search with search_contacts, read with get_contact_details, and \
                 pass idempotency_key on creates so retries never duplicate records.",
            )
    }
}
