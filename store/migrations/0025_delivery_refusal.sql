-- A delivery's last refusal as the mail server classified it, beside its text in
-- last_error: the reply code, the RFC 3463 status and the class (hard, soft, policy).
ALTER TABLE deliveries ADD COLUMN last_reply INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN last_status TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN last_refusal TEXT NOT NULL DEFAULT '';
