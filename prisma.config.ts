// Prisma CLI configuration (Prisma 7 moved the datasource URL here): SQLite's schema folder (its datasource and
// generator, linked to the shared prisma/models.prisma) and its migrations.
// Migrations are applied by Atoll itself (server/store/sqlite/apply-migrations.ts); see README "Database".
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/sqlite',
  migrations: { path: 'prisma/sqlite/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'file:./data/atoll.db' },
});
