-- The canonical form of an audit_events row and the in-database verifier
-- (profile "default"). Loaded before audit_events.sql, whose trigger hashes
-- with audit_verify.row_hash.
--
-- The verifier lives in its own schema so that `cargo xtask backup-smoke`
-- can re-install it from the repository after a restore: a dump never
-- vouches for itself with a verifier it shipped.
--
-- Canonical payload: each field as a netstring, `<byte length>:<bytes>,`,
-- with `~` for NULL, in a fixed order after a version tag. Length prefixes
-- make the encoding injective: no value (with `|`, `,`, `:` or anything
-- else in it) can shift bytes into a neighbouring field, and NULL differs
-- from ''. The timestamp enters as integer microseconds since the Unix
-- epoch, so no session setting (TimeZone, DateStyle) can change it.
-- row_hash = lower-case hex SHA-256 of the payload's UTF-8 bytes.
--
-- Needs a UTF8 database: octet_length counts the same bytes that are hashed.

CREATE SCHEMA IF NOT EXISTS audit_verify;

CREATE OR REPLACE FUNCTION audit_verify.ns(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN v IS NULL THEN '~' ELSE octet_length(v)::text || ':' || v || ',' END $$;

-- PL/pgSQL rather than SQL: a SQL function here is not inlined (it calls
-- the STABLE extract), and per-call SQL-function overhead made it twice as
-- slow in the trigger and in the verifier.
CREATE OR REPLACE FUNCTION audit_verify.row_hash(
    seq bigint, prev_hash text, id bigint, occurred_at timestamptz,
    actor text, actor_type text, action text, resource_type text,
    resource_id text, details jsonb, event_category text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN encode(sha256(convert_to(
           audit_verify.ns('fetchml.audit_events.v1')
        || audit_verify.ns(seq::text)
        || audit_verify.ns(prev_hash)
        || audit_verify.ns(id::text)
        || audit_verify.ns((extract(epoch FROM occurred_at) * 1000000)::bigint::text)
        || audit_verify.ns(actor)
        || audit_verify.ns(actor_type)
        || audit_verify.ns(action)
        || audit_verify.ns(resource_type)
        || audit_verify.ns(resource_id)
        || audit_verify.ns(details::text)
        || audit_verify.ns(event_category),
        'UTF8')), 'hex');
END
$$;

-- Walks the chain in seq order and checks, per row: seq is the next one,
-- row_hash matches the row's contents, prev_hash is the previous row's
-- row_hash (64 zeros for the first). Then the head row must name the last
-- row. Stops at the first break and names its kind:
--   first-seq   the first row is not seq 1 (the oldest rows are missing)
--   seq-gap     a seq is skipped (rows in the middle are missing)
--   row-hash    a row's contents do not match its row_hash (modified)
--   prev-link   a row does not chain onto the one before (reordered, replaced)
--   head-missing  audit_chain_head has no row 1
--   head-ahead  the head names a later seq than the last row (newest rows
--               deleted, or the table truncated)
--   head-behind the head names an earlier seq (the head was rolled back)
--   head-hash   same seq, different hash
-- walked counts the rows that passed before the first break.
CREATE OR REPLACE FUNCTION audit_verify.verify_chain()
RETURNS TABLE (
    walked bigint, total bigint, head_seq bigint, head_hash text,
    last_seq bigint, last_hash text, break_seq bigint, break_kind text, detail text
)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r record;
    heads bigint;
    want_seq bigint := 1;
    want_prev text := repeat('0', 64);
BEGIN
    walked := 0;
    last_seq := 0;
    last_hash := repeat('0', 64);
    SELECT count(*) INTO total FROM public.audit_events;
    SELECT count(*), max(h.seq), max(h.row_hash) INTO heads, head_seq, head_hash
      FROM public.audit_chain_head h WHERE h.id = 1;

    FOR r IN
        SELECT e.seq, e.prev_hash, e.row_hash,
               audit_verify.row_hash(e.seq, e.prev_hash, e.id, e.occurred_at, e.actor,
                   e.actor_type, e.action, e.resource_type, e.resource_id, e.details,
                   e.event_category) AS want
          FROM public.audit_events e
         ORDER BY e.seq
    LOOP
        IF r.seq IS DISTINCT FROM want_seq THEN
            break_seq := r.seq;
            IF want_seq = 1 THEN
                break_kind := 'first-seq';
                detail := format('the first row has seq %s, not 1: the oldest rows are missing', r.seq);
            ELSE
                break_kind := 'seq-gap';
                detail := format('seq %s follows seq %s: rows in between are missing', r.seq, want_seq - 1);
            END IF;
            RETURN NEXT;
            RETURN;
        END IF;
        IF r.row_hash IS DISTINCT FROM r.want THEN
            break_seq := r.seq;
            break_kind := 'row-hash';
            detail := format('seq %s: row_hash does not match the row''s contents: the row was modified', r.seq);
            RETURN NEXT;
            RETURN;
        END IF;
        IF r.prev_hash IS DISTINCT FROM want_prev THEN
            break_seq := r.seq;
            break_kind := 'prev-link';
            detail := format('seq %s: prev_hash is not the row_hash of seq %s: rows were reordered or replaced', r.seq, r.seq - 1);
            RETURN NEXT;
            RETURN;
        END IF;
        walked := walked + 1;
        last_seq := r.seq;
        last_hash := r.row_hash;
        want_seq := r.seq + 1;
        want_prev := r.row_hash;
    END LOOP;

    IF heads = 0 THEN
        break_kind := 'head-missing';
        detail := 'audit_chain_head has no row 1';
    ELSIF head_seq > last_seq THEN
        break_kind := 'head-ahead';
        detail := format('the head names seq %s but the last row is seq %s: the newest rows were deleted or the table truncated', head_seq, last_seq);
    ELSIF head_seq < last_seq THEN
        break_kind := 'head-behind';
        detail := format('the head names seq %s but the last row is seq %s: the head was rolled back', head_seq, last_seq);
    ELSIF head_hash IS DISTINCT FROM last_hash THEN
        break_kind := 'head-hash';
        detail := format('the head hash is not the row_hash of seq %s', last_seq);
    END IF;
    RETURN NEXT;
END
$$;
