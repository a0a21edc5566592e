-- Pages cut by size read each row's stored size instead of length() of its text (server/store/prisma-run-store.ts):
-- length() detoasted every row's whole payload. "size" holds what length() returned there (characters), so cuts
-- fall where they did; rows that exist get it from length() here. The default 0 keeps the inserts of a node that
-- predates the column working during a rolling upgrade, and the triggers below give those rows their length() too:
-- the worker query gate trusts "size" to bound what one ctx.db call reads (a 0 would let a page read 100 answers
-- of MAX_RESULT_BYTES whole). Only rows that arrive with 0 are measured here: current nodes write the size.
-- Adding a column with a constant default rewrites nothing; the UPDATE writes each row once (its TOASTed text is
-- not copied) and holds the two tables' writers back until the migration commits.

-- AlterTable
ALTER TABLE "Message" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0;
UPDATE "Message" SET "size" = length("content");

-- AlterTable
ALTER TABLE "RunEvent" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0;
UPDATE "RunEvent" SET "size" = length("payload");

CREATE FUNCTION "atoll_message_size"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW."size" := length(NEW."content");
  RETURN NEW;
END $$;
CREATE TRIGGER "Message_size" BEFORE INSERT ON "Message" FOR EACH ROW WHEN (NEW."size" = 0) EXECUTE FUNCTION "atoll_message_size"();

CREATE FUNCTION "atoll_run_event_size"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW."size" := length(NEW."payload");
  RETURN NEW;
END $$;
CREATE TRIGGER "RunEvent_size" BEFORE INSERT ON "RunEvent" FOR EACH ROW WHEN (NEW."size" = 0) EXECUTE FUNCTION "atoll_run_event_size"();
