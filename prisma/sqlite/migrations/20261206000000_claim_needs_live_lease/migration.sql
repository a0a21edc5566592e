-- Nothing on SQLite: this migration changes PostgreSQL's shared-queue claim (several nodes, issue 14); the two
-- databases keep the same list of migrations.
SELECT 1;
