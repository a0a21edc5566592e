-- AlterTable
ALTER TABLE "Run" ADD COLUMN "replayOf" TEXT;
