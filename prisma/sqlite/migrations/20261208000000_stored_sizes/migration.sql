-- Pages cut by size read each row's stored size instead of length() of its text (server/store/prisma-run-store.ts):
-- length() read every row's whole payload. "size" holds what length() returned there (characters), so cuts fall
-- where they did; rows that exist get it from length() here.
--
-- The tables are rebuilt, not altered: ADD COLUMN would put "size" after the text, and SQLite then walks a large
-- row's overflow pages to reach it (measured on 1,000 events of 64 KiB: 69 ms to read the sizes after the payload,
-- 1.4 ms before it). Nothing references these tables and every row keeps its key, so the foreign keys hold
-- throughout; Message's AUTOINCREMENT counter is carried over, so ids of deleted messages are never given again.

-- RedefineTables
CREATE TABLE "new_Message" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "threadId" TEXT NOT NULL,
    "runId" TEXT,
    "role" TEXT NOT NULL,
    "size" INTEGER NOT NULL DEFAULT 0,
    "content" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'complete',
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Message_threadId_fkey" FOREIGN KEY ("threadId") REFERENCES "Thread" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_Message" ("id", "threadId", "runId", "role", "size", "content", "status", "createdAt")
SELECT "id", "threadId", "runId", "role", length("content"), "content", "status", "createdAt" FROM "Message";
DELETE FROM "sqlite_sequence" WHERE "name" = 'new_Message';
INSERT INTO "sqlite_sequence" ("name", "seq") SELECT 'new_Message', "seq" FROM "sqlite_sequence" WHERE "name" = 'Message';
DROP TABLE "Message";
ALTER TABLE "new_Message" RENAME TO "Message";
CREATE INDEX "Message_threadId_id_idx" ON "Message"("threadId", "id");
CREATE INDEX "Message_runId_id_idx" ON "Message"("runId", "id");

CREATE TABLE "new_RunEvent" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "runId" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "type" TEXT NOT NULL,
    "size" INTEGER NOT NULL DEFAULT 0,
    "payload" TEXT NOT NULL,
    "timestamp" DATETIME NOT NULL,
    CONSTRAINT "RunEvent_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_RunEvent" ("id", "runId", "seq", "type", "size", "payload", "timestamp")
SELECT "id", "runId", "seq", "type", length("payload"), "payload", "timestamp" FROM "RunEvent";
DROP TABLE "RunEvent";
ALTER TABLE "new_RunEvent" RENAME TO "RunEvent";
CREATE UNIQUE INDEX "RunEvent_runId_seq_key" ON "RunEvent"("runId", "seq");
