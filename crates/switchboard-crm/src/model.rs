//! The CRM's vocabulary: enums, tool/REST inputs and outputs.
//!
//! Inputs take enum values as plain strings and are validated by the store, so a bad stage
//! or status is a tool error with a stable kind (`invalid_stage`, …) rather than a protocol
//! error from argument decoding. Money is carried as decimal strings end to end: JSON numbers
//! are accepted on input for convenience, but only strings are exact.

use std::borrow::Cow;
use std::fmt::Write as _;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use switchboard_core::ToolOutput;

use crate::error::CrmError;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in their natural order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a value, or explains which values are allowed.
            pub fn parse(text: &str) -> Result<Self, CrmError> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(CrmError::invalid(
                        $kind,
                        format!(
                            concat!("unknown ", $what, " {:?}; expected one of: {}"),
                            text,
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a contact is in its relationship with us.
    ContactStatus, "invalid_status", "status", {
        Lead => "lead", Prospect => "prospect", Active => "active", Churned => "churned",
    }
);

string_enum!(
    /// Where an opportunity is in the sales pipeline.
    Stage, "invalid_stage", "stage", {
        Prospecting => "prospecting", Qualification => "qualification", Proposal => "proposal",
        Negotiation => "negotiation", Won => "won", Lost => "lost",
    }
);

string_enum!(
    /// How we were in touch with a contact.
    InteractionKind, "invalid_interaction_kind", "interaction kind", {
        Call => "call", Email => "email", Meeting => "meeting",
    }
);

impl Stage {
    /// The win probability an opportunity gets when it enters this stage without one given.
    pub fn default_probability(self) -> i32 {
        match self {
            Stage::Prospecting => 10,
            Stage::Qualification => 25,
            Stage::Proposal => 50,
            Stage::Negotiation => 75,
            Stage::Won => 100,
            Stage::Lost => 0,
        }
    }
}

/// An amount of money as the caller wrote it: a decimal string (exact) or a JSON number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Amount(pub String);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Text(text) => Amount(text),
            Raw::Number(number) => Amount(number.to_string()),
        })
    }
}

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A non-negative decimal amount, e.g. \"50000\" or \"1234.50\". Strings are exact; numbers are accepted but may lose precision.",
            "type": ["string", "number"],
            "examples": ["50000", "1234.50"]
        })
    }
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// Search contacts: free text plus filters, one page at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SearchContactsParams {
    /// Text matched case-insensitively anywhere in the name, company or email.
    #[serde(default)]
    pub query: Option<String>,
    /// Only contacts with this status: lead, prospect, active or churned.
    #[serde(default)]
    pub status: Option<String>,
    /// Only contacts last contacted before this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[serde(default)]
    pub last_contact_before: Option<String>,
    /// Only contacts last contacted after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[serde(default)]
    pub last_contact_after: Option<String>,
    /// Page size, 1 to 100; default 10.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, to continue from there.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Which contact to read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContactIdParams {
    /// The contact's ID.
    pub contact_id: String,
}

/// A new contact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewContact {
    /// Full name.
    pub name: String,
    /// Email address; unique, compared case-insensitively.
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    /// Job title, e.g. CTO.
    #[serde(default)]
    pub position: Option<String>,
    /// lead, prospect, active or churned; default lead.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Makes retries safe: a repeated call with the same key returns the first result.
    #[serde(default, skip_serializing)]
    pub idempotency_key: Option<String>,
}

/// Changes to a contact. Absent fields stay as they are; an empty string clears phone,
/// company or position.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContactPatch {
    /// The version you read; the update fails with `version_conflict` if it has changed.
    pub version: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub position: Option<String>,
    /// lead, prospect, active or churned.
    #[serde(default)]
    pub status: Option<String>,
    /// Replaces the whole tag list.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// Update one contact, guarded by its version.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateContactParams {
    /// The contact's ID.
    pub contact_id: String,
    #[serde(flatten)]
    pub patch: ContactPatch,
}

/// A new opportunity for a contact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewOpportunity {
    /// The contact this deal is with.
    pub contact_id: String,
    pub title: String,
    /// Deal value, at least 0, at most 4 decimal places.
    pub value: Amount,
    /// ISO 4217 code; default USD.
    #[serde(default)]
    pub currency: Option<String>,
    /// prospecting, qualification, proposal, negotiation, won or lost; default prospecting.
    #[serde(default)]
    pub stage: Option<String>,
    /// Win probability 0 to 100; defaults by stage (prospecting 10, qualification 25,
    /// proposal 50, negotiation 75, won 100, lost 0).
    #[serde(default)]
    pub probability: Option<i32>,
    /// YYYY-MM-DD.
    #[serde(default)]
    pub expected_close_date: Option<String>,
    /// Makes retries safe: a repeated call with the same key returns the first result.
    #[serde(default, skip_serializing)]
    pub idempotency_key: Option<String>,
}

/// Move an opportunity to another stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StageChange {
    /// prospecting, qualification, proposal, negotiation, won or lost.
    pub stage: String,
    /// Win probability 0 to 100; defaults to the new stage's default.
    #[serde(default)]
    pub probability: Option<i32>,
}

/// Move one opportunity to another stage.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateStageParams {
    /// The opportunity's ID.
    pub opportunity_id: String,
    #[serde(flatten)]
    pub change: StageChange,
}

/// Filters for listing opportunities, one page at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ListOpportunitiesParams {
    /// Only this stage.
    #[serde(default)]
    pub stage: Option<String>,
    /// Only this contact's opportunities.
    #[serde(default)]
    pub contact_id: Option<String>,
    /// Only this ISO 4217 currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Only values at least this (compared as numbers, whatever the currency).
    #[serde(default)]
    pub min_value: Option<Amount>,
    /// Only values at most this (compared as numbers, whatever the currency).
    #[serde(default)]
    pub max_value: Option<Amount>,
    /// Page size, 1 to 100; default 20.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// A note to append to a contact's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewNote {
    /// The note's text. Appended; earlier notes are never changed.
    #[serde(alias = "body", alias = "text")]
    pub notes: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: Option<String>,
    /// Makes retries safe: a repeated call with the same key returns the first result.
    #[serde(default, skip_serializing)]
    pub idempotency_key: Option<String>,
}

/// Append a note to one contact's timeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddNoteParams {
    /// The contact's ID.
    pub contact_id: String,
    #[serde(flatten)]
    pub note: NewNote,
}

/// A call, email or meeting with a contact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogInteractionParams {
    /// The contact's ID.
    pub contact_id: String,
    /// call, email or meeting.
    pub kind: String,
    /// What was discussed.
    pub summary: String,
    /// When it happened (RFC 3339 or YYYY-MM-DD, UTC); default now.
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// Makes retries safe: a repeated call with the same key returns the first result.
    #[serde(default, skip_serializing)]
    pub idempotency_key: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------

/// A contact as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub position: Option<String>,
    /// lead, prospect, active or churned.
    pub status: String,
    pub tags: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    /// RFC 3339, UTC; when a call, email or meeting was last logged.
    pub last_contact_at: Option<String>,
    /// Pass this back to `update_contact`.
    pub version: i64,
}

/// One page of contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    /// How many contacts match the filters, over all pages.
    pub total_found: i64,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A sales opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Opportunity {
    pub id: String,
    pub contact_id: String,
    pub title: String,
    /// Exact decimal, as a string.
    pub value: String,
    /// ISO 4217 code.
    pub currency: String,
    pub stage: String,
    /// 0 to 100.
    pub probability: i32,
    /// YYYY-MM-DD.
    pub expected_close_date: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One page of opportunities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OpportunityPage {
    pub opportunities: Vec<Opportunity>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A note on a contact's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    pub id: String,
    pub contact_id: String,
    pub body: String,
    pub author: Option<String>,
    pub created_at: String,
}

/// A logged call, email or meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interaction {
    pub id: String,
    pub contact_id: String,
    /// call, email or meeting.
    pub kind: String,
    pub occurred_at: String,
    pub summary: String,
    pub created_at: String,
}

/// A contact with its opportunities and its latest notes and interactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContactDetails {
    pub contact: Contact,
    /// All of the contact's opportunities, oldest first.
    pub opportunities: Vec<Opportunity>,
    /// The latest notes, newest first (at most 20).
    pub notes: Vec<Note>,
    /// The latest interactions, newest first (at most 20).
    pub interactions: Vec<Interaction>,
}

/// Totals for one stage in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineRow {
    pub stage: String,
    pub currency: String,
    pub count: i64,
    /// Sum of values, exact decimal string.
    pub total_value: String,
    /// Sum of value × probability / 100, exact decimal string.
    pub weighted_value: String,
}

/// The sales pipeline, per stage and currency (stages in pipeline order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineSummary {
    pub stages: Vec<PipelineRow>,
}

// ---------------------------------------------------------------------------------------
// Text renderings
// ---------------------------------------------------------------------------------------

fn contact_line(out: &mut String, c: &Contact) {
    let _ = write!(out, "- {} <{}>", c.name, c.email);
    if let Some(company) = &c.company {
        let _ = write!(out, ", {company}");
    }
    if let Some(position) = &c.position {
        let _ = write!(out, " ({position})");
    }
    let _ = write!(out, " [{}] id={} v{}", c.status, c.id, c.version);
    if let Some(last) = &c.last_contact_at {
        let _ = write!(out, " last contact {last}");
    }
    out.push('\n');
}

fn opportunity_line(out: &mut String, o: &Opportunity) {
    let _ = writeln!(
        out,
        "- {}: {} {} ({}, {}%) id={}",
        o.title, o.value, o.currency, o.stage, o.probability, o.id
    );
}

impl ToolOutput for Contact {
    fn render_text(&self) -> String {
        let mut out = String::new();
        contact_line(&mut out, self);
        if !self.tags.is_empty() {
            let _ = writeln!(out, "  tags: {}", self.tags.join(", "));
        }
        out
    }
}

impl ToolOutput for ContactPage {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} contact(s) found, {} on this page\n",
            self.total_found,
            self.contacts.len()
        );
        for c in &self.contacts {
            contact_line(&mut out, c);
        }
        if let Some(cursor) = &self.next_cursor {
            let _ = writeln!(out, "more: cursor={cursor}");
        }
        out
    }
}

impl ToolOutput for ContactDetails {
    fn render_text(&self) -> String {
        let mut out = self.contact.render_text();
        if let Some(phone) = &self.contact.phone {
            let _ = writeln!(out, "  phone: {phone}");
        }
        let _ = writeln!(out, "Opportunities ({}):", self.opportunities.len());
        for o in &self.opportunities {
            opportunity_line(&mut out, o);
        }
        let _ = writeln!(out, "Latest notes ({}):", self.notes.len());
        for n in &self.notes {
            let author = n.author.as_deref().unwrap_or("unknown");
            let _ = writeln!(out, "- {} by {}: {}", n.created_at, author, n.body);
        }
        let _ = writeln!(out, "Latest interactions ({}):", self.interactions.len());
        for i in &self.interactions {
            let _ = writeln!(out, "- {} {}: {}", i.occurred_at, i.kind, i.summary);
        }
        out
    }
}

impl ToolOutput for Opportunity {
    fn render_text(&self) -> String {
        let mut out = String::new();
        opportunity_line(&mut out, self);
        if let Some(date) = &self.expected_close_date {
            let _ = writeln!(out, "  expected close: {date}");
        }
        out
    }
}

impl ToolOutput for OpportunityPage {
    fn render_text(&self) -> String {
        let mut out = format!(
            "{} opportunit(ies) on this page\n",
            self.opportunities.len()
        );
        for o in &self.opportunities {
            opportunity_line(&mut out, o);
        }
        if let Some(cursor) = &self.next_cursor {
            let _ = writeln!(out, "more: cursor={cursor}");
        }
        out
    }
}

impl ToolOutput for Note {
    fn render_text(&self) -> String {
        let author = self.author.as_deref().unwrap_or("unknown");
        format!(
            "Note {} added to contact {} at {} by {}: {}\n",
            self.id, self.contact_id, self.created_at, author, self.body
        )
    }
}

impl ToolOutput for Interaction {
    fn render_text(&self) -> String {
        format!(
            "Logged {} with contact {} at {}: {} (id={})\n",
            self.kind, self.contact_id, self.occurred_at, self.summary, self.id
        )
    }
}

impl ToolOutput for PipelineSummary {
    fn render_text(&self) -> String {
        if self.stages.is_empty() {
            return "The pipeline is empty.\n".to_owned();
        }
        let mut out = String::from("stage | currency | count | total | weighted\n");
        for r in &self.stages {
            let _ = writeln!(
                out,
                "{} | {} | {} | {} | {}",
                r.stage, r.currency, r.count, r.total_value, r.weighted_value
            );
        }
        out
    }
}
