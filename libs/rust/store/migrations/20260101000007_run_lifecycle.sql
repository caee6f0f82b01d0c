-- What the worker's run lifecycle records on each run: the slot it holds, its resolved profile,
-- and a run deadline that pauses while the run waits on an approval.
ALTER TABLE agent_runs
    ADD COLUMN slot_no integer,
    ADD COLUMN model text,
    ADD COLUMN reasoning_effort text,
    ADD COLUMN deadline_at timestamptz,
    ADD COLUMN timeout_paused_at timestamptz;
CREATE INDEX agent_runs_running_lease ON agent_runs (lease_until) WHERE status = 'running';
