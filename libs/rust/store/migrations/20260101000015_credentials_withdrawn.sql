-- When the worker withdrew a run's credentials from the cluster (deleted the run's Secret once its
-- runner had started): the runner starts the agent only after this is set, so an agent that may
-- create pods never finds the Secret to mount.
ALTER TABLE agent_runs ADD COLUMN credentials_withdrawn_at timestamptz;
