-- Known answer for the default profile: these eight rows, inserted in this
-- order into an empty chain (fresh audit_chain.sql + audit_events.sql), give
-- the head below. Any change to the canonical form, the trigger or the
-- column types changes it. `cargo xtask backup-smoke` loads this file into a
-- scratch database under a non-UTC session TimeZone on every run, and its
-- Rust verifier must reach the same head from the exported rows.
--
-- known-answer-head: 8:d229ef36b58a2d4c1d1b9487e53c49ada9690471a024c95e64a1a9e8451b2c0f

SET standard_conforming_strings = on;

INSERT INTO audit_events (occurred_at, actor, actor_type, action, resource_type, resource_id, details, event_category) VALUES
    ('2024-01-15 14:30:00.123456+00', 'alice', 'user', 'certificate.issue', 'certificate', 'cert-1', '{"serial": "01:02", "amount": 1.50}', 'lifecycle'),
    ('2024-01-15 14:30:00.123456+00', 'Zoë Ångström 李雷 🚀', 'user', 'auth.login', 'user', 'u-2', NULL, NULL),
    ('2024-01-15 14:30:00.123456+00', 'svc|deployer', 'service', 'policy|update', 'a|b', 'CN=example.com|O=Acme "Corp"', '{"a": {"b": [1, 2.50, {"c": null}]}, "s": "pipe|quote\""}', ''),
    ('1969-12-31 23:59:59.5+00', 'o''brien', 'system', 'certificate.revoke', 'certificate', 'key ''quoted''', '[]', 'security'),
    ('2024-01-15 20:15:00+05:45', 'back\slash', 'api-key', 'comma,colon:semi;', 'policy', '', 'null', NULL),
    ('2099-12-31 23:59:59.999999+00', E'tab\tand\nnewline', 'user', 'certificate.renew', 'certificate', 'cert-6', '"just a string"', 'a|b'),
    ('2024-01-15 14:30:01+00', '', 'user', 'auth.login', 'user', 'u-7', '{"big": 12345678901234567890.000001, "tiny": 0.10, "neg": -0.0}', 'security'),
    ('2024-01-15 14:30:01+00', 'x', 'service', 'certificate.issue', 'certificate', 'cert-8', '{}', NULL);

DO $$
DECLARE
    got text;
BEGIN
    SELECT h.seq || ':' || h.row_hash INTO got FROM audit_chain_head h WHERE h.id = 1;
    IF got IS DISTINCT FROM '8:d229ef36b58a2d4c1d1b9487e53c49ada9690471a024c95e64a1a9e8451b2c0f' THEN
        RAISE EXCEPTION 'known answer: head is %, expected 8:d229ef36b58a2d4c1d1b9487e53c49ada9690471a024c95e64a1a9e8451b2c0f', got;
    END IF;
END
$$;
