-- Pages cut by size read each row's stored size instead of length() of its text (server/store/prisma-run-store.ts):
-- length() detoasted every row's whole payload. "size" holds what length() returned there (characters), so cuts
-- fall where they did; rows that exist get it from length() here. The default 0 keeps the inserts of a node that
-- predates the column working during a rolling upgrade (a 0 only makes a page read more rows, never fewer).
-- Adding a column with a constant default rewrites nothing; the UPDATE writes each row once (its TOASTed text is
-- not copied) and holds the two tables' writers back until the migration commits.

-- AlterTable
ALTER TABLE "Message" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0;
UPDATE "Message" SET "size" = length("content");

-- AlterTable
ALTER TABLE "RunEvent" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0;
UPDATE "RunEvent" SET "size" = length("payload");
