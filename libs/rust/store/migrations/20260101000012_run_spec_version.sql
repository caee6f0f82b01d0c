-- Run payloads are versioned RunSpecs (ADR-0014). Payloads written before the version existed have
-- the same fields (spec §4.3) and are version 1: mark them so, or a run queued across the upgrade
-- would fail at launch for want of the field.
UPDATE agent_runs SET run_payload = run_payload || '{"version": 1}'::jsonb
 WHERE NOT run_payload ? 'version';
