-- keygate's shared key store, version 2: the audit trail of key management.
--
-- One row per key-management write attempt: an allowed change is inserted in
-- the same transaction as the change (so a change never exists without its
-- row, nor a row without its change); a refused or failed attempt in a short
-- transaction of its own, before the refusal is answered. Rows are never
-- pruned (the changes table is; this one is not): retention is the
-- operator's, e.g. DELETE FROM audit WHERE at < now() - interval '400 days'.
--
-- before/after are key configurations (name, permissions, revision), never a
-- secret or a secret hash. request_id is the server's request id: after a
-- connection lost during COMMIT the writer looks it up to learn the outcome.
-- idempotency_key is the client's Idempotency-Key header, if any.

CREATE TABLE audit (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL,
    service         text NOT NULL,
    key_id          text NOT NULL DEFAULT '',
    action          text NOT NULL,
    actor           text NOT NULL DEFAULT '',
    outcome         text NOT NULL CHECK (outcome IN ('allowed', 'refused', 'failed')),
    status          integer NOT NULL,
    code            text NOT NULL,
    message         text NOT NULL DEFAULT '',
    before          jsonb,
    after           jsonb,
    policy_revision text NOT NULL DEFAULT '',
    client_ip       text NOT NULL DEFAULT '',
    request_id      text NOT NULL DEFAULT '',
    idempotency_key text NOT NULL DEFAULT '',
    revision        bigint,
    CHECK ((outcome = 'allowed') = (revision IS NOT NULL))
);

CREATE INDEX audit_service_id ON audit (service, id);
CREATE INDEX audit_request_id ON audit (request_id) WHERE request_id <> '';

-- A member's Idempotency-Key names one allowed write per service: a retry
-- finds it here (after locking the service's row) and is answered from it.
CREATE UNIQUE INDEX audit_idempotency ON audit (service, actor, idempotency_key)
    WHERE idempotency_key <> '' AND outcome = 'allowed';
