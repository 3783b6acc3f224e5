-- The running totals of 0003 (accruals_spent), kept once a statement for inserts: a batch of
-- acknowledgements inserts its accruals in one statement, and two updates of the same rule's
-- and issuer's rows for each of them were a third of the insert's cost. Updates and deletes
-- of accruals, which are rare, stay row by row.
CREATE FUNCTION accruals_spent_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE award_rules r SET spent = r.spent + n.points
        FROM (SELECT rule_id, sum(points) AS points FROM inserted GROUP BY rule_id) n
        WHERE r.id = n.rule_id;
    UPDATE issuers i SET spent = i.spent + n.points
        FROM (SELECT issuer_id, sum(points) AS points FROM inserted GROUP BY issuer_id) n
        WHERE i.id = n.issuer_id;
    RETURN NULL;
END $$;
DROP TRIGGER accruals_spent ON accruals;
CREATE TRIGGER accruals_spent AFTER DELETE OR UPDATE OF points, rule_id, issuer_id ON accruals
    FOR EACH ROW EXECUTE FUNCTION accruals_spent();
CREATE TRIGGER accruals_spent_inserted AFTER INSERT ON accruals REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION accruals_spent_inserted();
