-- Known answer for the certctl profile: these rows, inserted in this order
-- into an empty chain (fresh certctl/audit_chain.sql + audit_events.sql),
-- give the head below under the published canonical form.
--
-- known-answer-head: 84195488c65595a900b59872a20c4f2943ca64c55b1a6e9ee3e6690ef462577b

SET standard_conforming_strings = on;

INSERT INTO audit_events (id, "timestamp", actor, actor_type, action, resource_type, resource_id, details, event_category) VALUES
    ('audit-c', '2024-01-15 14:30:00.123456+00', 'alice', 'user', 'certificate.issue', 'certificate', 'cert-1', '{"serial": "01:02", "amount": 1.50}', 'lifecycle'),
    ('audit-b', '2024-01-15 14:30:00.123456+00', 'Zoë Ångström 李雷 🚀', 'user', 'auth.login', 'user', 'u-2', NULL, NULL),
    ('audit-a', '2024-01-15 14:30:00.123456+00', 'svc|deployer', 'service', 'policy|update', 'a|b', 'CN=example.com|O=Acme "Corp"', '{"a": {"b": [1, 2.50, {"c": null}]}}', ''),
    ('audit-d', '1969-12-31 23:59:59.5+00', 'o''brien', 'system', 'certificate.revoke', 'certificate', 'key ''quoted''', '[]', 'security'),
    ('audit-e', '2024-01-15 20:15:00+05:45', 'back\slash', 'api-key', 'comma,colon:semi;', 'policy', '', 'null', NULL);

DO $$
DECLARE
    got text;
BEGIN
    SELECT h.row_hash INTO got FROM audit_chain_head h WHERE h.id = 1;
    IF got IS DISTINCT FROM '84195488c65595a900b59872a20c4f2943ca64c55b1a6e9ee3e6690ef462577b' THEN
        RAISE EXCEPTION 'known answer: head is %, expected 84195488c65595a900b59872a20c4f2943ca64c55b1a6e9ee3e6690ef462577b', got;
    END IF;
END
$$;
