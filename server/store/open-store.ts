/** The one place that picks a database implementation: by the target's kind, one folder each. */
import type { StoreBackend, StoreOptions } from './backend.js';
import type { DatabaseTarget } from './database-target.js';

/**
 * Only the target's backend is loaded (required here, not imported): on SQLite, PostgreSQL's driver, adapter and
 * generated client would cost the front ~6 MiB of heap and their load time, and the other way round.
 */
export function openStore(target: DatabaseTarget, options: StoreOptions): StoreBackend {
  switch (target.kind) {
    case 'sqlite':
      return (require('./sqlite/sqlite-backend.js') as typeof import('./sqlite/sqlite-backend.js')).createSqliteBackend(target, options);
    case 'postgresql':
      return (require('./postgresql/postgresql-backend.js') as typeof import('./postgresql/postgresql-backend.js')).createPostgresqlBackend(target, options);
  }
}
