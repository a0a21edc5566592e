-- Several nodes (issue 14): the lease that holds a run (its node's, while it runs or waits there), a stop asked
-- from another node, each node's lease, and the users the shared queue serves in turn. SQLite is one node only:
-- the columns and tables exist so both databases keep one set of models.

-- AlterTable
ALTER TABLE "Run" ADD COLUMN "owner" TEXT;
ALTER TABLE "Run" ADD COLUMN "cancelRequested" BOOLEAN NOT NULL DEFAULT false;

-- CreateTable
CREATE TABLE "Node" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "nodeId" TEXT NOT NULL,
    "startedAt" DATETIME NOT NULL,
    "expiresAt" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "QueueUser" (
    "userId" TEXT NOT NULL PRIMARY KEY,
    "servedAt" DATETIME NOT NULL
);

-- CreateIndex
CREATE INDEX "Run_userId_status_idx" ON "Run"("userId", "status");

-- CreateIndex
CREATE INDEX "Run_threadId_status_idx" ON "Run"("threadId", "status");

-- CreateIndex
CREATE INDEX "Run_owner_idx" ON "Run"("owner");

-- CreateIndex
CREATE INDEX "Node_expiresAt_idx" ON "Node"("expiresAt");
