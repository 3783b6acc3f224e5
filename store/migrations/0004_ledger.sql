-- Guards under the ledger's code (claim 14, redeemer 40): what Settle, Correct and Redeem
-- keep in their transactions, the database refuses to break as well, whoever writes.

-- An accrual is posted once: its posting has one entry per account, and its posted_at, once
-- set, stays.
CREATE UNIQUE INDEX ledger_accrual_once ON ledger_entries (accrual_id, account)
    WHERE accrual_id IS NOT NULL;
CREATE TRIGGER accruals_posted_once BEFORE UPDATE OF posted_at ON accruals
WHEN OLD.posted_at IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the accrual is already posted'); END;

-- A redemption is paid by one posting.
CREATE UNIQUE INDEX ledger_redemption_once ON ledger_entries (redemption_id, account)
    WHERE redemption_id IS NOT NULL;

-- Only the three kinds of account exist.
CREATE TRIGGER ledger_account_known BEFORE INSERT ON ledger_entries
WHEN NOT (NEW.account = 'redeemed' OR NEW.account GLOB 'issuer:[1-9]*' OR NEW.account GLOB 'consumer:[1-9]*')
BEGIN SELECT RAISE(ABORT, 'unknown ledger account'); END;

-- The balance shown in e-mails can never go negative.
CREATE TRIGGER consumers_balance_not_negative BEFORE UPDATE OF points_balance ON consumers
WHEN NEW.points_balance < 0
BEGIN SELECT RAISE(ABORT, 'the points balance would go negative'); END;
