-- When the lease of a run's namespace ends; the worker extends it while the run is active, and
-- revise runs look for a live namespace of their issue to reuse.
ALTER TABLE agent_runs ADD COLUMN namespace_lease_until timestamptz;
CREATE INDEX agent_runs_namespace_reuse ON agent_runs (repository_id, issue_number, agent_key, namespace_lease_until DESC)
    WHERE namespace IS NOT NULL;
