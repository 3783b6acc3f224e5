-- The role raw-SQL selections run as (issue 12): it may read the columns of consumers and
-- nothing else of ours (PostgreSQL 15 grants PUBLIC nothing on the public schema's tables).
-- Roles belong to the whole cluster: it is made once and granted in each database. A
-- database user that may not create roles, or grant this one, leaves it out; the store then
-- refuses raw SQL selections and says why.
DO $$
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pointpost_selection') THEN
            CREATE ROLE pointpost_selection NOLOGIN NOINHERIT;
        END IF;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE NOTICE 'role pointpost_selection not created: %', SQLERRM;
            RETURN;
        WHEN duplicate_object OR unique_violation THEN
            NULL; -- another database's migration made it meanwhile
    END;
    BEGIN
        EXECUTE format('GRANT pointpost_selection TO %I', current_user);
        GRANT SELECT (id, email, first_name, last_name, city, region, country, postal_code,
                      birth_year, gender, interests, format, attributes, status,
                      points_balance, created_at, updated_at)
            ON consumers TO pointpost_selection;
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE NOTICE 'role pointpost_selection not granted: %', SQLERRM;
    END;
END
$$;
