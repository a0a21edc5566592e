// Prisma CLI configuration (Prisma 7 moved the datasource URL here).
// Migrations are applied by Atoll itself (server/store/migrations.ts); see README "Database".
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'file:./data/atoll.db' },
});
