-- The shared queue's lookups cost the same however long the history (server/store/postgresql/cluster-store.ts).
--
-- The queue's statements run with generic plans (run-statements.ts, WRITE_CONNECTION_OPTIONS), planned once per
-- connection, and on a fresh database that is while the tables are nearly empty; those plans stayed until
-- autovacuum's first ANALYZE of each table (a minute or more later) and some read the whole history:
-- - a run's first message, `min(m."id") ... WHERE m."runId" = r."id"`, walked Message's primary key from the oldest
--   message and filtered by run (a waiting run's messages are the newest: every message ever written, at every
--   claim). An index on ("runId", "id") answers it in one probe, and serves lookups by "runId" alone too.
-- - `"status" IN ('queued', 'running')` on the second column of Run("userId", "status") or Run("threadId",
--   "status") can be planned as a scan of the first column alone with the statuses as a filter: every run the user
--   or the conversation ever had. Each status is now looked up by equality on both columns, which no plan drops.
-- - Run("owner") alone made the renewal's check for stops (every NODE_LEASE_MS / 5) read every run the node ever
--   held; ("owner", "status") finds the started ones (server/store/postgresql/cluster-store.ts, `stopsAsked`).
-- - the claim's UPDATE joined the users' heads as a subquery it could run again for each waiting run; the heads
--   are now computed once (MATERIALIZED).
-- Measured with plans made on an empty database, then 20,000 finished runs of one user in one conversation held by
-- one lease (tests/postgresql/queue-cost.test.ts), buffers touched before → after this migration: a claim 1,216 → 98,
-- an accept's check 380 → 11, a renewal's check 748 → 5 (with no history: 51, 6, 4 → 56, 8, 3).
-- Not CONCURRENTLY (each migration runs in a transaction): writes to "Message" and "Run" wait while they build.
CREATE INDEX "Message_runId_id_idx" ON "Message"("runId", "id");
DROP INDEX "Message_runId_idx";

CREATE INDEX "Run_owner_status_idx" ON "Run"("owner", "status");
DROP INDEX "Run_owner_idx";

-- The runs of a user that a node has claimed and not finished: what USER_MAX_CONCURRENT_RUNS caps. PL/pgSQL, not
-- SQL: its plan is cached by the session (a SQL function called per row is planned again at every call).
CREATE OR REPLACE FUNCTION atoll_started_runs(p_user TEXT)
RETURNS BIGINT
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT count(*) FROM "Run" AS a WHERE a."userId" = p_user AND a."status" = 'queued' AND a."owner" IS NOT NULL)
       + (SELECT count(*) FROM "Run" AS a WHERE a."userId" = p_user AND a."status" = 'running' AND a."owner" IS NOT NULL);
END $$;

-- Whether a conversation has a run that a node has claimed and not finished (one run per conversation).
CREATE OR REPLACE FUNCTION atoll_conversation_held(p_thread TEXT)
RETURNS BOOLEAN
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM "Run" AS b WHERE b."threadId" = p_thread AND b."status" = 'queued' AND b."owner" IS NOT NULL)
      OR EXISTS (SELECT 1 FROM "Run" AS b WHERE b."threadId" = p_thread AND b."status" = 'running' AND b."owner" IS NOT NULL);
END $$;

-- Users with waiting runs whose oldest waiting run could start now (as before: 20261205000000).
CREATE OR REPLACE FUNCTION atoll_ready_users(p_cap INTEGER)
RETURNS TABLE ("userId" TEXT)
LANGUAGE sql STABLE AS $$
  SELECT u."userId" FROM (SELECT DISTINCT w."userId" FROM "Run" AS w WHERE w."owner" IS NULL AND w."status" = 'queued') AS u
  CROSS JOIN LATERAL (
    SELECT r."threadId" FROM "Run" AS r WHERE r."userId" = u."userId" AND r."status" = 'queued' AND r."owner" IS NULL
    ORDER BY (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = r."id"), r."queuedAt" LIMIT 1
  ) AS h
  WHERE atoll_started_runs(u."userId") < p_cap AND NOT atoll_conversation_held(h."threadId")
$$;

-- A user's waiting runs and the unfinished runs of a conversation, for an accept's checks (as before: 20261203000000).
CREATE OR REPLACE FUNCTION atoll_accept_check(p_user TEXT, p_thread TEXT)
RETURNS TABLE ("waiting" BIGINT, "busy" TEXT[])
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
  INSERT INTO "QueueUser" ("userId", "servedAt") VALUES (p_user, (now() AT TIME ZONE 'UTC'))
    ON CONFLICT ("userId") DO UPDATE SET "userId" = EXCLUDED."userId";
  RETURN QUERY
    SELECT count(*) FILTER (WHERE r."status" = 'queued'), coalesce(array_agg(r."id") FILTER (WHERE r."threadId" = p_thread), '{}')
    FROM (
      SELECT q."id", q."status", q."threadId" FROM "Run" AS q WHERE q."userId" = p_user AND q."status" = 'queued'
      UNION ALL
      SELECT s."id", s."status", s."threadId" FROM "Run" AS s WHERE s."userId" = p_user AND s."status" = 'running'
    ) AS r;
END $$;

-- The claim (as before: 20261206000000), its heads computed once and its checks by the functions above.
CREATE OR REPLACE FUNCTION atoll_claim(p_lease TEXT, p_max INTEGER, p_cap INTEGER)
RETURNS TABLE (
  "id" TEXT, "threadId" TEXT, "userId" TEXT, "agentName" TEXT, "input" TEXT, "correlationId" TEXT, "requestId" TEXT,
  "status" TEXT, "errorCode" TEXT, "errorMessage" TEXT, "result" TEXT, "queuedAt" TIMESTAMP(3), "startedAt" TIMESTAMP(3),
  "finishedAt" TIMESTAMP(3), "cellId" TEXT, "workerId" INTEGER, "attempts" INTEGER, "report" TEXT, "replayOf" TEXT,
  "owner" TEXT, "lastSeq" INTEGER, "more" BOOLEAN
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  locked TEXT[];
  taken TEXT[];
  rest BOOLEAN;
BEGIN
  PERFORM 1 FROM "Node" AS n WHERE n."id" = p_lease AND n."expiresAt" > (now() AT TIME ZONE 'UTC') FOR KEY SHARE;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  WITH "picked" AS (
    SELECT q."userId", q."servedAt" FROM "QueueUser" AS q JOIN atoll_ready_users(p_cap) AS w ON w."userId" = q."userId"
    ORDER BY q."servedAt", q."userId" LIMIT p_max FOR UPDATE OF q SKIP LOCKED
  )
  SELECT array_agg(p."userId" ORDER BY p."servedAt", p."userId") INTO locked FROM "picked" AS p;
  IF locked IS NULL THEN
    RETURN;
  END IF;

  WITH "heads" AS MATERIALIZED (
    SELECT h."id", h."userId", u."ord", atoll_started_runs(h."userId") AS "active", atoll_conversation_held(h."threadId") AS "held"
    FROM unnest(locked) WITH ORDINALITY AS u("uid", "ord") CROSS JOIN LATERAL (
      SELECT r."id", r."userId", r."threadId" FROM "Run" AS r WHERE r."userId" = u."uid" AND r."status" = 'queued' AND r."owner" IS NULL
      ORDER BY (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = r."id"), r."queuedAt" LIMIT 1
    ) AS h
  ),
  "took" AS (
    UPDATE "Run" AS r SET "owner" = p_lease FROM "heads" AS e
    WHERE r."id" = e."id" AND e."active" < p_cap AND NOT e."held" AND r."status" = 'queued' AND r."owner" IS NULL
    RETURNING r."id", r."userId", e."ord"
  ),
  "served" AS (
    UPDATE "QueueUser" AS q SET "servedAt" = (now() AT TIME ZONE 'UTC') FROM "took" AS t WHERE q."userId" = t."userId"
  )
  SELECT array_agg(t."id" ORDER BY t."ord") INTO taken FROM "took" AS t;
  IF taken IS NULL THEN
    RETURN;
  END IF;

  rest := cardinality(taken) >= p_max AND EXISTS (SELECT 1 FROM atoll_ready_users(p_cap));

  RETURN QUERY
    SELECT r."id", r."threadId", r."userId", r."agentName", r."input", r."correlationId", r."requestId", r."status",
      r."errorCode", r."errorMessage", r."result", r."queuedAt", r."startedAt", r."finishedAt", r."cellId", r."workerId",
      r."attempts", r."report", r."replayOf", r."owner",
      coalesce((SELECT max(e."seq") FROM "RunEvent" AS e WHERE e."runId" = r."id"), 0), rest
    FROM unnest(taken) WITH ORDINALITY AS t("rid", "ord") JOIN "Run" AS r ON r."id" = t."rid"
    ORDER BY t."ord";
END $$;
