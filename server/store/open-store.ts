/** The one place that picks a database implementation: by the target's kind, one folder each. */
import type { StoreBackend, StoreOptions } from './backend.js';
import type { DatabaseTarget } from './database-target.js';
import { createPostgresqlBackend } from './postgresql/postgresql-backend.js';
import { createSqliteBackend } from './sqlite/sqlite-backend.js';

export function openStore(target: DatabaseTarget, options: StoreOptions): StoreBackend {
  switch (target.kind) {
    case 'sqlite':
      return createSqliteBackend(target, options);
    case 'postgresql':
      return createPostgresqlBackend(target, options);
  }
}
