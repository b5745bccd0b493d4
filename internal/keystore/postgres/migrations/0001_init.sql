-- keygate's shared key store, version 1.
--
-- services and members are seeded once from data/ (an empty database only);
-- keys are written by keygate's key-management API. Secrets and member
-- tokens are stored as their SHA-256, never in plain text.
--
-- head is a single row: revision is taken by every key write, last in its
-- transaction, so revisions are gap-free and in commit order; epoch names
-- this database (a replica that sees another epoch reloads everything).
-- changes is the change log the replicas apply (one row per revision, a
-- tombstone for a delete); rows older than the retention are pruned.

CREATE TABLE services (
    id        text PRIMARY KEY,
    plan      text NOT NULL,
    key_count integer NOT NULL DEFAULT 0 CHECK (key_count >= 0)
);

CREATE TABLE members (
    id         text PRIMARY KEY,
    service    text NOT NULL REFERENCES services (id),
    role       text NOT NULL,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32)
);

CREATE TABLE keys (
    id            text PRIMARY KEY,
    service       text NOT NULL REFERENCES services (id),
    name          text NOT NULL,
    secret_hash   bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    configuration jsonb NOT NULL,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    revision      bigint NOT NULL
);

CREATE INDEX keys_service ON keys (service);

CREATE TABLE head (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision  bigint NOT NULL,
    epoch     text NOT NULL,
    seeded_at timestamptz
);

INSERT INTO head (id, revision, epoch)
VALUES (true, 0, md5(random()::text || clock_timestamp()::text));

CREATE TABLE changes (
    revision bigint PRIMARY KEY,
    op       text NOT NULL CHECK (op IN ('put', 'delete')),
    key_id   text NOT NULL,
    service  text NOT NULL,
    row      jsonb,
    actor    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((op = 'put') = (row IS NOT NULL))
);

CREATE INDEX changes_at ON changes (at);
