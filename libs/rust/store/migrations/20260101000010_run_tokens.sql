-- Per-run bearer tokens of the agent runner (product spec §6.2, §9.1; ADR-0012). Only a SHA-256 of
-- the token is stored. A token authorises only while its run is pending or running and before it
-- expires; finishing the run deletes it.

CREATE TABLE run_tokens (
    run_id     uuid PRIMARY KEY REFERENCES agent_runs (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
