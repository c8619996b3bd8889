-- CRM schema for SQLite. Timestamps are TEXT in one fixed RFC 3339 form
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that text order is time order; money is TEXT
-- holding the exact decimal, plus a fixed-width sort key so value filters compare exactly.

CREATE TABLE contacts (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    email           TEXT NOT NULL,
    phone           TEXT,
    company         TEXT,
    position        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('lead', 'prospect', 'active', 'churned')),
    tags            TEXT NOT NULL DEFAULT '[]',
    search_text     TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    last_contact_at TEXT,
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX contacts_email_ci ON contacts (lower(email));
CREATE INDEX contacts_name_id ON contacts (name, id);
CREATE INDEX contacts_last_contact ON contacts (last_contact_at);

CREATE TABLE opportunities (
    id                  TEXT PRIMARY KEY NOT NULL,
    contact_id          TEXT NOT NULL REFERENCES contacts (id),
    title               TEXT NOT NULL,
    value               TEXT NOT NULL,
    value_sort          TEXT NOT NULL,
    currency            TEXT NOT NULL,
    stage               TEXT NOT NULL CHECK (stage IN ('prospecting', 'qualification', 'proposal', 'negotiation', 'won', 'lost')),
    probability         INTEGER NOT NULL CHECK (probability BETWEEN 0 AND 100),
    expected_close_date TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX opportunities_contact ON opportunities (contact_id);
CREATE INDEX opportunities_created_id ON opportunities (created_at, id);

CREATE TABLE notes (
    id         TEXT PRIMARY KEY NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts (id),
    body       TEXT NOT NULL,
    author     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX notes_contact_time ON notes (contact_id, created_at);
-- The timeline is append-only: history is never rewritten, even by a buggy client.
CREATE TRIGGER notes_no_update BEFORE UPDATE ON notes
BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;
CREATE TRIGGER notes_no_delete BEFORE DELETE ON notes
BEGIN SELECT RAISE(ABORT, 'notes are append-only'); END;

CREATE TABLE interactions (
    id          TEXT PRIMARY KEY NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('call', 'email', 'meeting')),
    occurred_at TEXT NOT NULL,
    summary     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX interactions_contact_time ON interactions (contact_id, occurred_at);

-- One row per (tool, key): the primary key is what makes concurrent retries collapse to one.
CREATE TABLE idempotency_keys (
    tool       TEXT NOT NULL,
    key        TEXT NOT NULL,
    request    TEXT NOT NULL,
    result     TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tool, key)
);
