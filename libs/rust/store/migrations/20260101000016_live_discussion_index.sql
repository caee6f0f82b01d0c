-- The live discussion runs of an issue, found by an index of only those runs: the ingest reads
-- them for every issue delivery and cancels them when a run label supersedes the discussion, so
-- the lookup must not grow with the number of pending runs or read their (large) payloads.
CREATE INDEX agent_runs_live_discussion ON agent_runs (repository_id, issue_number)
    WHERE status IN ('pending', 'running') AND (run_payload->>'discussion_mode')::boolean;
