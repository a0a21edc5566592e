-- Nothing on SQLite: this migration gives PostgreSQL the shared queue's claim and an accept's checks as functions
-- (several nodes, issue 14); the two databases keep the same list of migrations.
SELECT 1;
