-- A route's warm-up: a daily cap growing by a schedule ('' for none), from warmup_start (ms).
ALTER TABLE routes ADD COLUMN warmup TEXT NOT NULL DEFAULT '';
ALTER TABLE routes ADD COLUMN warmup_start INTEGER NOT NULL DEFAULT 0;
