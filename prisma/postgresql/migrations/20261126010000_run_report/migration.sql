-- AlterTable
ALTER TABLE "Run" ADD COLUMN "report" TEXT;
