/** The generated Prisma client's type, for modules that must not load a driver (worker threads). */
// Typed against SQLite's client; PostgreSQL's is generated from the same models and has the same API.
import type { PrismaClient } from './generated/sqlite/client.js';

export type Db = InstanceType<typeof PrismaClient>;
