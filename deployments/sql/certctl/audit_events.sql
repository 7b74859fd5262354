-- Profile "certctl": an audit table shaped like certctl's, with a chain
-- trigger implementing the published canonical form (audit_chain.sql,
-- loaded first). It exists so that the certctl profile is tested against
-- rows produced the way certctl produces them; it is not the application's
-- schema (that is ../audit_events.sql).

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
    "timestamp"    timestamptz NOT NULL DEFAULT now(),
    event_category text,
    prev_hash      text,
    row_hash       text        NOT NULL
);

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

CREATE TRIGGER zz_audit_events_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();
