-- Fewer round trips for the shared queue (server/store/postgresql/cluster-store.ts).
--
-- The claim also says whether runs still wait once it has taken its own ("more", on each row it returns). A node
-- that filled its free workers used to wake every other node whenever it took as many runs as it had room for:
-- with one free worker that was every claim, so each run woke every node, and each of them claimed for nothing.
-- Now it wakes them only when something is left for them.
-- A function's result columns change only by dropping it; the claim is one call in its own transaction, so a
-- claim running on the old definition during this migration finishes on it.
DROP FUNCTION atoll_claim(TEXT, INTEGER, INTEGER);

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
  "owner" TEXT, "lastSeq" INTEGER, "more" BOOLEAN
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  locked TEXT[];
  taken TEXT[];
  rest BOOLEAN;
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

  -- Read after the take: this claim's own runs are no longer waiting; other claims' takes not committed yet still
  -- look waiting (a wake too many, never one too few).
  rest := EXISTS (SELECT 1 FROM "Run" AS w WHERE w."status" = 'queued' AND w."owner" IS NULL);

  RETURN QUERY
    SELECT r."id", r."threadId", r."userId", r."agentName", r."input", r."correlationId", r."requestId", r."status",
      r."errorCode", r."errorMessage", r."result", r."queuedAt", r."startedAt", r."finishedAt", r."cellId", r."workerId",
      r."attempts", r."report", r."replayOf", r."owner",
      coalesce((SELECT max(e."seq") FROM "RunEvent" AS e WHERE e."runId" = r."id"), 0), rest
    FROM unnest(taken) WITH ORDINALITY AS t("rid", "ord") JOIN "Run" AS r ON r."id" = t."rid"
    ORDER BY t."ord";
END $$;


-- An accept's checks that refuse by themselves: past p_max_waiting waiting runs (SQLSTATE AT001), or a busy
-- conversation when p_reject_if_busy (AT002). The accept can then send BEGIN, this, its writes and COMMIT at once,
-- one round trip instead of four: a refusal aborts the transaction, so the writes behind it never commit. Returns
-- the conversation's unfinished runs. The two-argument form stays for nodes not yet upgraded.
CREATE OR REPLACE FUNCTION atoll_accept_check(p_user TEXT, p_thread TEXT, p_max_waiting INTEGER, p_reject_if_busy BOOLEAN)
RETURNS TEXT[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n_waiting BIGINT;
  unfinished TEXT[];
BEGIN
  SELECT c."waiting", c."busy" INTO n_waiting, unfinished FROM atoll_accept_check(p_user, p_thread) AS c;
  IF n_waiting >= p_max_waiting THEN
    RAISE EXCEPTION 'the user has % runs waiting', n_waiting USING ERRCODE = 'AT001';
  END IF;
  IF p_reject_if_busy AND cardinality(unfinished) > 0 THEN
    RAISE EXCEPTION 'the conversation has a run in progress' USING ERRCODE = 'AT002';
  END IF;
  RETURN unfinished;
END $$;
