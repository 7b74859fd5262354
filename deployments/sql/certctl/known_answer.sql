-- Known answer for the certctl profile: these rows, inserted in this order
-- into an empty chain (fresh certctl/audit_chain.sql + audit_events.sql),
-- give the head below under the published canonical form. Their categories
-- are the three migration 000032 allows, one of them by its DEFAULT.
--
-- known-answer-head: 37e18cd2e1e4207b380ad969b98cf5753feed03e2e1205aea7d44f46a44086ad

SET standard_conforming_strings = on;

INSERT INTO audit_events (id, "timestamp", actor, actor_type, action, resource_type, resource_id, details, event_category) VALUES
    ('audit-c', '2024-01-15 14:30:00.123456+00', 'alice', 'user', 'certificate.issue', 'certificate', 'cert-1', '{"serial": "01:02", "amount": 1.50}', 'cert_lifecycle'),
    ('audit-b', '2024-01-15 14:30:00.123456+00', 'Zoë Ångström 李雷 🚀', 'user', 'auth.login', 'user', 'u-2', NULL, 'auth'),
    ('audit-a', '2024-01-15 14:30:00.123456+00', 'svc|deployer', 'service', 'policy|update', 'a|b', 'CN=example.com|O=Acme "Corp"', '{"a": {"b": [1, 2.50, {"c": null}]}}', 'config'),
    ('audit-d', '1969-12-31 23:59:59.5+00', 'o''brien', 'system', 'certificate.revoke', 'certificate', 'key ''quoted''', '[]', DEFAULT),
    ('audit-e', '2024-01-15 20:15:00+05:45', 'back\slash', 'api-key', 'comma,colon:semi;', 'policy', '', 'null', 'auth');

DO $$
DECLARE
    got text;
BEGIN
    SELECT h.row_hash INTO got FROM audit_chain_head h WHERE h.id = 1;
    IF got IS DISTINCT FROM '37e18cd2e1e4207b380ad969b98cf5753feed03e2e1205aea7d44f46a44086ad' THEN
        RAISE EXCEPTION 'known answer: head is %, expected 37e18cd2e1e4207b380ad969b98cf5753feed03e2e1205aea7d44f46a44086ad', got;
    END IF;
END
$$;
