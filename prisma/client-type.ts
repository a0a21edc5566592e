/** The generated Prisma client's type, for modules that must not load a driver (worker threads). */
import type { PrismaClient } from './generated/client.js';

export type Db = InstanceType<typeof PrismaClient>;
