-- When a job's next delivery can be claimed (NextClaimable), from two indexes rather than a
-- scan of every delivery still to send: the first next attempt among those no lease holds,
-- and the first lease to end among those leased (a claim takes only deliveries due, so a
-- lease ends after the delivery's next attempt). A claim moves a delivery from the first
-- to the second; its outcome or a release takes it out, back into the first for a retry.
CREATE INDEX deliveries_unleased ON deliveries (job_key, next_attempt_at)
    WHERE sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner = 0;
CREATE INDEX deliveries_lease_ends ON deliveries (job_key, lease_until)
    WHERE sent = 0 AND rejected = 0 AND failed = 0 AND lease_owner <> 0;
