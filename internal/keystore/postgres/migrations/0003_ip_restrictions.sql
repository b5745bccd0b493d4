-- keygate's shared key store, version 3: API IP restriction settings.
--
-- One row per service that restricts addresses: settings is the whole
-- setting, {"default": [...], "apis": {"<endpoint>": [...]}}, replaced at
-- once by PUT /v1/services/{service}/ip-restrictions (a cleared setting is
-- no row). A write takes a revision like a key write and records a change
-- row of op 'ip' whose row is the setting after the write (the empty
-- setting when cleared); key_id is '' on such a row.
--
-- (Version 2 is the audit trail's; the runner applies whichever versions a
-- database lacks, in version order.)

CREATE TABLE ip_restrictions (
    service    text PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    settings   jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE changes DROP CONSTRAINT IF EXISTS changes_op_check;
ALTER TABLE changes DROP CONSTRAINT IF EXISTS changes_check;
ALTER TABLE changes ADD CONSTRAINT changes_op_check CHECK (op IN ('put', 'delete', 'ip'));
ALTER TABLE changes ADD CONSTRAINT changes_check CHECK ((op = 'delete') = (row IS NULL));
