-- Cleanup requests are claimed like the other work queues: one worker carries out each request,
-- under a lease that another worker may take over once it expires (a claim's attempt number is
-- its fencing token), instead of every worker replica handling every request.
ALTER TABLE cleanup_requests DROP CONSTRAINT cleanup_requests_status_check;
ALTER TABLE cleanup_requests ADD CONSTRAINT cleanup_requests_status_check CHECK (status IN ('pending', 'in_progress', 'done', 'failed'));
ALTER TABLE cleanup_requests ADD COLUMN lease_owner text, ADD COLUMN lease_until timestamptz;
ALTER TABLE cleanup_requests ADD CONSTRAINT cleanup_requests_lease_pair CHECK ((lease_owner IS NULL) = (lease_until IS NULL));
DROP INDEX cleanup_requests_pending;
CREATE INDEX cleanup_requests_due ON cleanup_requests (created_at) WHERE status IN ('pending', 'in_progress');
