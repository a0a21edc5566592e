-- A claim takes runs only for a lease that is alive (server/store/postgresql/cluster-store.ts).
--
-- It used to set "owner" to whatever lease it was given. A node that checked its lease, then was delayed (a GC
-- pause, a wait for a pool connection) past its expiry and a takeover that deleted its Node row, still claimed:
-- the run's owner was a lease no Node row named, so no takeover ever found it and no drain or register released
-- it; it held its user's cap and its conversation for good, and a stop found no node to ask. Same result
-- columns: the definition is replaced in place; the body is the previous migration's with the check first.

-- Up to p_max runs for the lease p_lease: locks up to p_max users with waiting runs who could start one now, least
-- recently served first (SKIP LOCKED: nodes claiming together serve different users); takes each one's oldest
-- waiting run if the user holds fewer than p_cap started runs and its conversation none; marks those users served;
-- returns the runs taken, in that order, with the last seq of each (read after the run's row was locked by the
-- take, so an event another node wrote under that lock is counted) and `more`: the claim was full and a run that
-- could start still waits.
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
  -- Only a live lease claims. KEY SHARE: a takeover of this node (FOR UPDATE, then DELETE) waits for this claim or
  -- skips the node until it committed, and a claim behind a takeover finds no row; the node's renewal (an UPDATE
  -- of a non-key column) does not wait for it.
  PERFORM 1 FROM "Node" AS n WHERE n."id" = p_lease AND n."expiresAt" > (now() AT TIME ZONE 'UTC') FOR KEY SHARE;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  -- Only users who could start now are locked (atoll_ready_users, a snapshot taken before the locks; the take below
  -- checks again after them, so a stale answer only costs a claim that takes nothing, never a cap).
  WITH "picked" AS (
    SELECT q."userId", q."servedAt" FROM "QueueUser" AS q JOIN atoll_ready_users(p_cap) AS w ON w."userId" = q."userId"
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

  -- Only a full claim's caller asks whether other nodes should claim: then, whether a run that could start still
  -- waits (a user at its cap or on a busy conversation wakes no one: the node where its run ends claims). Read
  -- after the take: this claim's own runs no longer wait; other claims' takes not committed yet still look waiting
  -- (a wake too many, never one too few).
  rest := cardinality(taken) >= p_max AND EXISTS (SELECT 1 FROM atoll_ready_users(p_cap));

  RETURN QUERY
    SELECT r."id", r."threadId", r."userId", r."agentName", r."input", r."correlationId", r."requestId", r."status",
      r."errorCode", r."errorMessage", r."result", r."queuedAt", r."startedAt", r."finishedAt", r."cellId", r."workerId",
      r."attempts", r."report", r."replayOf", r."owner",
      coalesce((SELECT max(e."seq") FROM "RunEvent" AS e WHERE e."runId" = r."id"), 0), rest
    FROM unnest(taken) WITH ORDINALITY AS t("rid", "ord") JOIN "Run" AS r ON r."id" = t."rid"
    ORDER BY t."ord";
END $$;
