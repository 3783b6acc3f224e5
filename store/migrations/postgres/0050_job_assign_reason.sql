-- Why the post office gave a job to its mail server (claim 8), as `job show` reports it.
ALTER TABLE jobs ADD COLUMN assign_reason TEXT NOT NULL DEFAULT '';
