-- The bounds of points-bearing values, rewards.MaxAwardPoints (1,000,000: one accrual, one
-- rule's points) and rewards.MaxBudget (10^15: a budget, a catalog cost, a ledger amount), so
-- that no running total can overflow whoever writes. SQLite cannot add a CHECK to a table
-- in place; triggers refuse new and changed rows instead, and leave rows already stored as
-- they are (a rule past the bound awards nothing; an accrual past it is held by settlement,
-- see settle_error).

CREATE TRIGGER award_rules_points_bound_insert BEFORE INSERT ON award_rules
WHEN NEW.points > 1000000 OR NEW.budget < 0 OR NEW.budget > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'award_rules: points must be 1 to 1000000 and budget 0 to 1000000000000000'); END;
CREATE TRIGGER award_rules_points_bound_update BEFORE UPDATE OF points, budget ON award_rules
WHEN NEW.points > 1000000 OR NEW.budget < 0 OR NEW.budget > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'award_rules: points must be 1 to 1000000 and budget 0 to 1000000000000000'); END;

CREATE TRIGGER issuers_budget_bound_insert BEFORE INSERT ON issuers
WHEN NEW.budget < 0 OR NEW.budget > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'issuers: budget must be 0 to 1000000000000000'); END;
CREATE TRIGGER issuers_budget_bound_update BEFORE UPDATE OF budget ON issuers
WHEN NEW.budget < 0 OR NEW.budget > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'issuers: budget must be 0 to 1000000000000000'); END;

CREATE TRIGGER accruals_points_bound_insert BEFORE INSERT ON accruals
WHEN NEW.points > 1000000
BEGIN SELECT RAISE(ABORT, 'accruals: points must be 1 to 1000000'); END;
CREATE TRIGGER accruals_points_bound_update BEFORE UPDATE OF points ON accruals
WHEN NEW.points > 1000000
BEGIN SELECT RAISE(ABORT, 'accruals: points must be 1 to 1000000'); END;

CREATE TRIGGER catalog_cost_bound_insert BEFORE INSERT ON catalog
WHEN NEW.cost > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'catalog: cost must be 1 to 1000000000000000'); END;
CREATE TRIGGER catalog_cost_bound_update BEFORE UPDATE OF cost ON catalog
WHEN NEW.cost > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'catalog: cost must be 1 to 1000000000000000'); END;

CREATE TRIGGER ledger_amount_bound BEFORE INSERT ON ledger_entries
WHEN NEW.amount < -1000000000000000 OR NEW.amount > 1000000000000000
BEGIN SELECT RAISE(ABORT, 'ledger_entries: amount must be within 1000000000000000 points'); END;

-- Why settlement could not post an accrual (an amount past the bounds, a balance that would
-- overflow), set by the settlement that tried: later ones skip the accrual, so it never stops
-- the others, and it stays pending, reported in the settlement's log.
ALTER TABLE accruals ADD COLUMN settle_error TEXT;
