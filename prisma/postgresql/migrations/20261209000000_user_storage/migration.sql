-- Each user's stored bytes (UTF-8) of event payloads and message contents, kept by the front's writes
-- (server/store/postgresql/run-statements.ts), so USER_MAX_STORED_BYTES is checked inside the accept's own
-- statement. Rows that exist are counted here once (octet_length reads every payload: a long migration on a
-- large history, holding the two tables' writers back until it commits).

-- CreateTable
CREATE TABLE "UserStorage" (
    "userId" TEXT NOT NULL,
    "bytes" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "UserStorage_pkey" PRIMARY KEY ("userId")
);

INSERT INTO "UserStorage" ("userId", "bytes")
SELECT u, sum(b) FROM (
  SELECT r."userId" AS u, octet_length(e."payload") AS b FROM "RunEvent" AS e JOIN "Run" AS r ON r."id" = e."runId"
  UNION ALL
  SELECT t."userId", octet_length(m."content") FROM "Message" AS m JOIN "Thread" AS t ON t."id" = m."threadId"
) AS x GROUP BY u;
