-- The voucher code a redemption gave the consumer, kept on her account page.
ALTER TABLE redemptions ADD COLUMN voucher TEXT NOT NULL DEFAULT '';
