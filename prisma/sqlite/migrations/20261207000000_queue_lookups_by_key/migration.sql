-- The shared models' indexes Message("runId") and Run("owner") become ("runId", "id") and ("owner", "status"):
-- PostgreSQL's queue looks runs up by both (see that migration). SQLite's queue is in memory; it gets the same
-- indexes so the two databases keep one schema.
CREATE INDEX "Message_runId_id_idx" ON "Message"("runId", "id");
DROP INDEX "Message_runId_idx";

CREATE INDEX "Run_owner_status_idx" ON "Run"("owner", "status");
DROP INDEX "Run_owner_idx";
