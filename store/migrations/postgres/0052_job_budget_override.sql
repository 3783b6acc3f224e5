-- Who scheduled a job although its worst case exceeded its issuer's budget left, and when
-- (milliseconds; 0: no override). Issuer users cannot; an operator may, and the job says so.
ALTER TABLE jobs ADD COLUMN budget_override_by TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN budget_override_at BIGINT NOT NULL DEFAULT 0;
