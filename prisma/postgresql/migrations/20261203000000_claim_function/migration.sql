-- The shared queue's claim and the checks of an accept (server/store/postgresql/cluster-store.ts), each as one
-- call: a claim was seven round trips (BEGIN, lock users, read their heads, take, mark served, last seqs,
-- COMMIT) and an accept's checks two; on a busy machine every round trip is two process switches. Each
-- statement below still runs on its own snapshot, taken after the locks before it (plpgsql gives a VOLATILE
-- function's statements a new one each under READ COMMITTED), which is what keeps the caps exact.

-- Locks the user's QueueUser row (every accept and claim of this user waits here in turn), then counts what the
-- user has waiting and which runs hold the conversation.
CREATE OR REPLACE FUNCTION atoll_accept_check(p_user TEXT, p_thread TEXT)
RETURNS TABLE ("waiting" BIGINT, "busy" TEXT[])
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
  INSERT INTO "QueueUser" ("userId", "servedAt") VALUES (p_user, (now() AT TIME ZONE 'UTC'))
    ON CONFLICT ("userId") DO UPDATE SET "userId" = EXCLUDED."userId";
  RETURN QUERY
    SELECT count(*) FILTER (WHERE r."status" = 'queued'), coalesce(array_agg(r."id") FILTER (WHERE r."threadId" = p_thread), '{}')
    FROM "Run" AS r WHERE r."userId" = p_user AND r."status" IN ('queued', 'running');
END $$;

-- Up to p_max runs for the lease p_lease: locks up to p_max users with waiting runs, least recently served first
-- (SKIP LOCKED: nodes claiming together serve different users); takes each one's oldest waiting run if the user
-- holds fewer than p_cap started runs and its conversation none; marks those users served; returns the runs taken,
-- in that order, with the last seq of each (read after the run's row was locked by the take, so an event another
-- node wrote under that lock is counted).
CREATE OR REPLACE FUNCTION atoll_claim(p_lease TEXT, p_max INTEGER, p_cap INTEGER)
RETURNS TABLE (
  "id" TEXT, "threadId" TEXT, "userId" TEXT, "agentName" TEXT, "input" TEXT, "correlationId" TEXT, "requestId" TEXT,
  "status" TEXT, "errorCode" TEXT, "errorMessage" TEXT, "result" TEXT, "queuedAt" TIMESTAMP(3), "startedAt" TIMESTAMP(3),
  "finishedAt" TIMESTAMP(3), "cellId" TEXT, "workerId" INTEGER, "attempts" INTEGER, "report" TEXT, "replayOf" TEXT,
  "owner" TEXT, "lastSeq" INTEGER
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  locked TEXT[];
  taken TEXT[];
BEGIN
  WITH "waiting" AS (SELECT DISTINCT w."userId" FROM "Run" AS w WHERE w."status" = 'queued' AND w."owner" IS NULL),
  "picked" AS (
    SELECT q."userId", q."servedAt" FROM "QueueUser" AS q JOIN "waiting" AS w ON w."userId" = q."userId"
    ORDER BY q."servedAt", q."userId" LIMIT p_max FOR UPDATE OF q SKIP LOCKED
  )
  SELECT array_agg(p."userId" ORDER BY p."servedAt", p."userId") INTO locked FROM "picked" AS p;
  IF locked IS NULL THEN
    RETURN;
  END IF;

  WITH "heads" AS (
    SELECT h."id", h."userId", u."ord",
      (SELECT count(*) FROM "Run" AS a WHERE a."userId" = h."userId" AND a."owner" IS NOT NULL AND a."status" IN ('queued', 'running')) AS "active",
      EXISTS (SELECT 1 FROM "Run" AS b WHERE b."threadId" = h."threadId" AND b."owner" IS NOT NULL AND b."status" IN ('queued', 'running')) AS "held"
    FROM unnest(locked) WITH ORDINALITY AS u("uid", "ord") CROSS JOIN LATERAL (
      SELECT r."id", r."userId", r."threadId" FROM "Run" AS r WHERE r."userId" = u."uid" AND r."status" = 'queued' AND r."owner" IS NULL
      ORDER BY r."queuedAt", (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = r."id") LIMIT 1
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

  RETURN QUERY
    SELECT r."id", r."threadId", r."userId", r."agentName", r."input", r."correlationId", r."requestId", r."status",
      r."errorCode", r."errorMessage", r."result", r."queuedAt", r."startedAt", r."finishedAt", r."cellId", r."workerId",
      r."attempts", r."report", r."replayOf", r."owner",
      coalesce((SELECT max(e."seq") FROM "RunEvent" AS e WHERE e."runId" = r."id"), 0)
    FROM unnest(taken) WITH ORDINALITY AS t("rid", "ord") JOIN "Run" AS r ON r."id" = t."rid"
    ORDER BY t."ord";
END $$;
