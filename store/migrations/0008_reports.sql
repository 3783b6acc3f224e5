-- The toolbox's job reports read one job's sends and acknowledgements by time, its
-- acknowledgements by channel and its accruals by rule. Without these indexes each of those
-- reads every row of its table (the acknowledgements and accruals of all jobs ever) or, on
-- deliveries, every row of the job and then sorts them: 300 ms and more for a job of a
-- million. The deliveries indexes are partial: a delivery enters one when it is sent or
-- acknowledged, not when it is selected.
CREATE INDEX deliveries_sent_at ON deliveries (job_key, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX deliveries_received_at ON deliveries (job_key, received_at) WHERE received_at IS NOT NULL;
CREATE INDEX acknowledgements_job ON acknowledgements (job_key, channel, consumer_id);
CREATE INDEX accruals_job ON accruals (job_key, rule_id, points);
