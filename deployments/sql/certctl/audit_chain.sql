-- Profile "certctl": the canonical form published by certctl's audit
-- migration 000047, and an in-database verifier for it. This file is our
-- own implementation of that published form, used to verify chains that
-- certctl wrote (`cargo xtask backup-smoke --profile certctl`).
--
--   row_hash = lower-case hex SHA-256 of
--     COALESCE(prev_hash,'') | id | actor | actor_type | action |
--     resource_type | resource_id | COALESCE(details::text,'') |
--     to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') |
--     COALESCE(event_category,'')
--   (fields joined with a bare '|'); the first row has prev_hash NULL; the
--   head is audit_chain_head(id = 1, row_hash), where '' means empty;
--   rows are walked in (timestamp, id) order.
--
-- Known weaknesses of that form (docs/runbooks/backup-smoke.md):
--   * bare '|' joins are ambiguous: actor 'a|b' + action 'c' hashes like
--     actor 'a' + action 'b|c', so a separator moved between fields is not
--     detected; NULL and '' hash alike in details, event_category, prev_hash;
--   * (timestamp, id) is not the chain's order when timestamps tie or when
--     a writer that took its timestamp earlier commits later, so a verifier
--     that walks that order reports breaks in a sound chain.
-- This verifier therefore follows the links (each row's prev_hash names the
-- row before it) and only reports how often the published order disagrees.

CREATE SCHEMA IF NOT EXISTS audit_verify;

CREATE OR REPLACE FUNCTION audit_verify.certctl_row_hash(
    prev_hash text, id text, actor text, actor_type text, action text,
    resource_type text, resource_id text, details jsonb, ts timestamptz,
    event_category text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN encode(sha256(convert_to(
           COALESCE(prev_hash, '') || '|' || id || '|' || actor || '|' || actor_type
        || '|' || action || '|' || resource_type || '|' || resource_id
        || '|' || COALESCE(details::text, '')
        || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || '|' || COALESCE(event_category, ''),
        'UTF8')), 'hex');
END
$$;

-- Follows the chain from the row whose prev_hash is NULL ('' hashes the
-- same, so it starts the chain too), one link
-- at a time, and stops at the first break:
--   no-genesis  no row starts the chain (the oldest row is missing)
--   fork        two rows claim the same predecessor
--   row-hash    a row's contents do not match its row_hash (modified)
--   orphan      rows the walk never reached (a row before them was deleted)
--   head-ahead  the head names a hash no row has (the newest rows deleted,
--               or the table truncated)
--   head-behind the head names a row that is not the last one (rolled back)
-- published_order_breaks counts the rows whose prev_hash is not the
-- row_hash of the row before them in (timestamp, id) order: the false
-- breaks a verifier walking the published order would report.
CREATE OR REPLACE FUNCTION audit_verify.certctl_verify_chain()
RETURNS TABLE (
    walked bigint, total bigint, head_hash text, last_hash text,
    break_at text, break_kind text, detail text, published_order_breaks bigint
)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r record;
    cur text := '';
    found_rows int;
    nxt record;
    heads bigint;
BEGIN
    walked := 0;
    SELECT count(*) INTO total FROM public.audit_events;
    SELECT count(*), max(h.row_hash) INTO heads, head_hash
      FROM public.audit_chain_head h WHERE h.id = 1;
    SELECT count(*) INTO published_order_breaks FROM (
        SELECT e.prev_hash, lag(e.row_hash) OVER (ORDER BY e."timestamp", e.id) AS before
          FROM public.audit_events e
    ) s WHERE COALESCE(s.prev_hash, '') IS DISTINCT FROM COALESCE(s.before, '');

    IF to_regclass('pg_temp.certctl_walk') IS NOT NULL THEN
        DROP TABLE pg_temp.certctl_walk;
    END IF;
    CREATE TEMP TABLE certctl_walk ON COMMIT DROP AS
        SELECT e.id, COALESCE(e.prev_hash, '') AS prev_key, e.row_hash,
               audit_verify.certctl_row_hash(e.prev_hash, e.id::text, e.actor, e.actor_type,
                   e.action, e.resource_type, e.resource_id, e.details, e."timestamp",
                   e.event_category) AS want,
               e."timestamp" AS ts
          FROM public.audit_events e;
    CREATE INDEX ON certctl_walk (prev_key);
    ANALYZE certctl_walk;

    LOOP
        found_rows := 0;
        FOR r IN SELECT * FROM certctl_walk w
                  WHERE w.prev_key = cur
                  ORDER BY w.ts, w.id LIMIT 2 LOOP
            found_rows := found_rows + 1;
            IF found_rows = 1 THEN
                nxt := r;
            ELSE
                break_at := r.id::text;
                break_kind := 'fork';
                detail := format('rows %s and %s both follow %s', nxt.id, r.id,
                                 CASE WHEN cur = '' THEN 'the start of the chain' ELSE cur END);
                RETURN NEXT;
                RETURN;
            END IF;
        END LOOP;
        EXIT WHEN found_rows = 0;
        IF nxt.row_hash IS DISTINCT FROM nxt.want THEN
            break_at := nxt.id::text;
            break_kind := 'row-hash';
            detail := format('row %s: row_hash does not match the row''s contents: the row was modified', nxt.id);
            RETURN NEXT;
            RETURN;
        END IF;
        walked := walked + 1;
        IF walked > total THEN
            break_at := nxt.id::text;
            break_kind := 'cycle';
            detail := 'the links form a cycle';
            RETURN NEXT;
            RETURN;
        END IF;
        last_hash := nxt.row_hash;
        cur := nxt.row_hash;
    END LOOP;

    IF walked < total THEN
        SELECT w.id::text INTO break_at FROM certctl_walk w
         WHERE w.prev_key <> ''
           AND NOT EXISTS (SELECT 1 FROM certctl_walk v WHERE v.row_hash = w.prev_key)
         ORDER BY w.ts, w.id LIMIT 1;
        IF walked = 0 THEN
            break_kind := 'no-genesis';
            detail := format('no row has prev_hash NULL: the oldest row is missing (%s rows unreachable)', total);
        ELSE
            break_kind := 'orphan';
            detail := format('%s of %s rows are not reachable from the first row: a row before %s was deleted',
                             total - walked, total, COALESCE(break_at, 'them'));
        END IF;
    ELSIF heads = 0 THEN
        break_kind := 'head-missing';
        detail := 'audit_chain_head has no row 1';
    ELSIF COALESCE(head_hash, '') IS DISTINCT FROM COALESCE(last_hash, '') THEN
        IF EXISTS (SELECT 1 FROM certctl_walk w WHERE w.row_hash = head_hash) THEN
            break_kind := 'head-behind';
            detail := 'the head names a row that is not the last one: the head was rolled back';
        ELSE
            break_kind := 'head-ahead';
            detail := 'the head names a hash that no row has: the newest rows were deleted or the table truncated';
        END IF;
    END IF;
    DROP TABLE pg_temp.certctl_walk;
    RETURN NEXT;
END
$$;
