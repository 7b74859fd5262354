-- Profile "certctl": an audit table shaped like certctl's, with a chain
-- trigger implementing the published canonical form (audit_chain.sql,
-- loaded first). It exists so that the certctl profile is tested against
-- rows produced the way certctl produces them, in a table carrying the
-- constraints and triggers a real certctl database has; it is not the
-- application's schema (that is ../audit_events.sql).
--
-- Written from what certctl's migrations are known to add (each section
-- names its migration), in their order; it is not a copy of them.

-- The audit table and its head row as the chain form needs them.
CREATE TABLE audit_chain_head (
    id       integer PRIMARY KEY CHECK (id = 1),
    row_hash text    NOT NULL DEFAULT ''
);
INSERT INTO audit_chain_head (id, row_hash) VALUES (1, '');

CREATE TABLE audit_events (
    id             text        PRIMARY KEY,
    actor          text        NOT NULL,
    actor_type     text        NOT NULL,
    action         text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    details        jsonb,
    "timestamp"    timestamptz NOT NULL DEFAULT now()
);

-- Migration 000018: the table is write-once. A row trigger refuses every
-- UPDATE and DELETE with SQLSTATE check_violation ("append-only"), and the
-- application role, where the database has one, loses UPDATE and DELETE.
-- (A dump made with --no-acl carries no privileges; the trigger travels.)
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'check_violation';
END
$$;

CREATE TRIGGER audit_events_worm_trigger
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'certctl') THEN
        REVOKE UPDATE, DELETE ON audit_events FROM certctl;
    END IF;
END
$$;

-- Migration 000032: every event has a category, one of three, with an
-- index for filtering by it and one for the newest events of a category.
ALTER TABLE audit_events
    ADD COLUMN event_category text NOT NULL DEFAULT 'cert_lifecycle',
    ADD CONSTRAINT audit_events_event_category_check
        CHECK (event_category IN ('cert_lifecycle', 'auth', 'config'));
CREATE INDEX audit_events_event_category_idx ON audit_events (event_category);
CREATE INDEX audit_events_event_category_timestamp_idx
    ON audit_events (event_category, "timestamp" DESC);

-- Migration 000047: the hash chain (form in audit_chain.sql). prev_hash is
-- NULL on the first row; the head row names the newest row_hash.
ALTER TABLE audit_events
    ADD COLUMN prev_hash text,
    ADD COLUMN row_hash  text NOT NULL;

CREATE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    head text;
BEGIN
    SELECT h.row_hash INTO head FROM audit_chain_head h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_chain_head has no row 1: the chain cannot be extended';
    END IF;
    NEW.prev_hash := NULLIF(head, '');
    NEW.row_hash := audit_verify.certctl_row_hash(NEW.prev_hash, NEW.id, NEW.actor,
        NEW.actor_type, NEW.action, NEW.resource_type, NEW.resource_id, NEW.details,
        NEW."timestamp", NEW.event_category);
    UPDATE audit_chain_head SET row_hash = NEW.row_hash WHERE id = 1;
    RETURN NEW;
END
$$;

-- BEFORE triggers fire in name order; "zz" keeps this one last, so no
-- other trigger can change NEW after it was hashed.
CREATE TRIGGER zz_audit_events_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();
