-- Running totals of the points accrued under each rule and by each issuer. An
-- acknowledgement checks both budgets; summing the accruals instead would read every accrual
-- of the rule (and, with no index on issuer_id, the whole table) on every acknowledgement.
-- Triggers keep the totals whoever writes accruals, so they cannot drift from the table.

ALTER TABLE award_rules ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE issuers ADD COLUMN spent INTEGER NOT NULL DEFAULT 0;

UPDATE award_rules SET spent = (SELECT coalesce(sum(points), 0) FROM accruals WHERE rule_id = award_rules.id);
UPDATE issuers SET spent = (SELECT coalesce(sum(points), 0) FROM accruals WHERE issuer_id = issuers.id);

CREATE TRIGGER accruals_spent_insert AFTER INSERT ON accruals
BEGIN
    UPDATE award_rules SET spent = spent + NEW.points WHERE id = NEW.rule_id;
    UPDATE issuers SET spent = spent + NEW.points WHERE id = NEW.issuer_id;
END;

CREATE TRIGGER accruals_spent_delete AFTER DELETE ON accruals
BEGIN
    UPDATE award_rules SET spent = spent - OLD.points WHERE id = OLD.rule_id;
    UPDATE issuers SET spent = spent - OLD.points WHERE id = OLD.issuer_id;
END;

CREATE TRIGGER accruals_spent_update AFTER UPDATE OF points, rule_id, issuer_id ON accruals
BEGIN
    UPDATE award_rules SET spent = spent - OLD.points WHERE id = OLD.rule_id;
    UPDATE issuers SET spent = spent - OLD.points WHERE id = OLD.issuer_id;
    UPDATE award_rules SET spent = spent + NEW.points WHERE id = NEW.rule_id;
    UPDATE issuers SET spent = spent + NEW.points WHERE id = NEW.issuer_id;
END;
