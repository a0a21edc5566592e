/** The one place that picks a database implementation: by the target's kind, one folder each. */
import type { StoreBackend, StoreOptions } from './backend.js';
import type { DatabaseTarget } from './database-target.js';

// Each implementation is loaded only when chosen: the other's driver and Prisma client would cost the front
// a few hundred milliseconds of start-up and their memory for nothing.
type Sqlite = typeof import('./sqlite/sqlite-backend.js');
type Postgresql = typeof import('./postgresql/postgresql-backend.js');

export function openStore(target: DatabaseTarget, options: StoreOptions): StoreBackend {
  switch (target.kind) {
    case 'sqlite':
      return (require('./sqlite/sqlite-backend.js') as Sqlite).createSqliteBackend(target, options);
    case 'postgresql':
      return (require('./postgresql/postgresql-backend.js') as Postgresql).createPostgresqlBackend(target, options);
  }
}
