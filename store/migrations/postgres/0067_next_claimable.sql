-- When a job's next delivery can be claimed (NextClaimable), from two indexes rather than a
-- scan of every delivery still to send: the first next attempt among those no lease holds,
-- and the leased ones of the job, few (what its mail servers hold), whose lease ends are
-- read from their rows. A claim moves a delivery from the first to the second; its outcome
-- or a release takes it out, back into the first for a retry. lease_until is in neither
-- index: the heartbeat, which moves it every second, updates no index (on PostgreSQL its
-- updates stay HOT).
CREATE INDEX deliveries_unleased ON deliveries (job_key, next_attempt_at)
    WHERE sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner = 0;
CREATE INDEX deliveries_job_leased ON deliveries (job_key)
    WHERE sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner <> 0;
