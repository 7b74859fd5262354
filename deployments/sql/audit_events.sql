-- The application's audit table (profile "default"): a hash chain computed
-- by the database itself. Load audit_chain.sql first (it defines the
-- canonical form, audit_verify.row_hash, that the trigger uses).
--
-- Order is defined by the chain, not by clocks: a BEFORE INSERT trigger
-- locks the one-row head table, assigns the next seq under that lock, and
-- links the new row to the head's hash. Concurrent writers therefore queue
-- on the head row, and rows that share a timestamp (one transaction's
-- now(), or two writers in the same microsecond) still have a single order.
-- The head row also makes deletion of the newest rows visible: the head
-- names a row that no longer exists.
--
-- The guards below make accidents loud; they are not a security boundary
-- (an owner can disable triggers). That is what the chain, the head and
-- an outside manifest are for.

DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'audit_events needs a UTF8 database, this one is %', current_setting('server_encoding');
    END IF;
END
$$;

CREATE TABLE audit_chain_head (
    id       smallint PRIMARY KEY CHECK (id = 1),
    seq      bigint   NOT NULL CHECK (seq >= 0),
    row_hash text     NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$')
);
-- The empty chain: seq 0, and 64 zeros as the "previous hash" of row 1.
INSERT INTO audit_chain_head (id, seq, row_hash) VALUES (1, 0, repeat('0', 64));

CREATE TABLE audit_events (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq            bigint      NOT NULL UNIQUE,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    actor_type     text        NOT NULL,
    action         text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    details        jsonb,
    event_category text,
    prev_hash      text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    row_hash       text        NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$')
);

-- seq, prev_hash and row_hash are always the trigger's, whatever the client sent.
CREATE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
BEGIN
    SELECT h.seq, h.row_hash INTO head_seq, head_hash
      FROM audit_chain_head h WHERE h.id = 1
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_chain_head has no row 1: the chain cannot be extended';
    END IF;
    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.row_hash := audit_verify.row_hash(NEW.seq, NEW.prev_hash, NEW.id, NEW.occurred_at,
        NEW.actor, NEW.actor_type, NEW.action, NEW.resource_type, NEW.resource_id,
        NEW.details, NEW.event_category);
    UPDATE audit_chain_head SET seq = NEW.seq, row_hash = NEW.row_hash WHERE id = 1;
    RETURN NEW;
END
$$;

-- BEFORE triggers fire in name order; "zz" keeps this one last, so no
-- other trigger can change NEW after it was hashed.
CREATE TRIGGER zz_audit_events_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The head moves only from inside the chain trigger (trigger depth 2).
CREATE FUNCTION audit_chain_head_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_chain_head is written only by the audit_events trigger: % refused', TG_OP;
END
$$;

CREATE TRIGGER audit_chain_head_guard
    BEFORE INSERT OR UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard();
CREATE TRIGGER audit_chain_head_no_truncate
    BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_head_guard();
