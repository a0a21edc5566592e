-- A correlation id is unique per user (idempotency holds across nodes). An id reused after the 24 h window
-- stays with its newest run; older runs give it up.
UPDATE "Run" SET "correlationId" = NULL
WHERE "correlationId" IS NOT NULL AND EXISTS (
    SELECT 1 FROM "Run" AS "newer"
    WHERE "newer"."userId" = "Run"."userId" AND "newer"."correlationId" = "Run"."correlationId"
      AND ("newer"."queuedAt" > "Run"."queuedAt" OR ("newer"."queuedAt" = "Run"."queuedAt" AND "newer"."id" > "Run"."id"))
);

-- CreateIndex
CREATE UNIQUE INDEX "Run_userId_correlationId_key" ON "Run"("userId", "correlationId");

-- CreateIndex
CREATE INDEX "Message_runId_idx" ON "Message"("runId");
