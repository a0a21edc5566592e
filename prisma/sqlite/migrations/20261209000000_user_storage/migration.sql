-- Each user's stored bytes (UTF-8) of event payloads and message contents, kept by the front's writes
-- (server/store/sqlite/run-writes.ts), so USER_MAX_STORED_BYTES is checked with one keyed read per accept.
-- Rows that exist are counted here once.

-- CreateTable
CREATE TABLE "UserStorage" (
    "userId" TEXT NOT NULL PRIMARY KEY,
    "bytes" BIGINT NOT NULL DEFAULT 0
);

INSERT INTO "UserStorage" ("userId", "bytes")
SELECT u, sum(b) FROM (
  SELECT r."userId" AS u, length(CAST(e."payload" AS BLOB)) AS b FROM "RunEvent" AS e JOIN "Run" AS r ON r."id" = e."runId"
  UNION ALL
  SELECT t."userId", length(CAST(m."content" AS BLOB)) FROM "Message" AS m JOIN "Thread" AS t ON t."id" = m."threadId"
) GROUP BY u;
