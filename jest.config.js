// Jest runs the compiled tests (npm test builds first): worker threads and cells are plain JavaScript
// anyway, and a TypeScript transform would not reach them.
//
// One pass per store, ATOLL_TEST_DATABASE=sqlite (the default) or postgresql (scripts/test-stores.js runs both):
// - the SQLite pass runs every file except the PostgreSQL-only ones (dist/tests/postgresql/);
// - the PostgreSQL pass runs every file that starts a server or reaches a database, those included;
//   the files that reach no database (STORE_FREE) ran already in the SQLite pass. A new test file runs in both
//   passes unless it is listed here.
const STORE = process.env.ATOLL_TEST_DATABASE || 'sqlite';
if (!['sqlite', 'postgresql'].includes(STORE)) throw new Error(`ATOLL_TEST_DATABASE must be sqlite or postgresql (got ${JSON.stringify(STORE)})`);

/** Files that reach no database (or only SQLite's own, in a file of their own): they run in the SQLite pass only. */
const STORE_FREE = [
  '/dist/tests/unit/',
  '/dist/tests/architecture\\.test\\.js$',
  '/dist/tests/cpu-governor\\.test\\.js$',
  '/dist/tests/delivery\\.test\\.js$',
  '/dist/tests/docs-paths\\.test\\.js$',
  '/dist/tests/run-emitter\\.test\\.js$',
  '/dist/tests/socket-order\\.test\\.js$',
  // Learns both providers' statements with no database.
  '/dist/tests/worker-query-gate\\.test\\.js$',
  // SQLite's migrations against the schema (PostgreSQL's are a PostgreSQL-only file).
  '/dist/tests/schema\\.test\\.js$',
];

module.exports = {
  testEnvironment: '<rootDir>/dist/tests/helpers/database-environment.js',
  globalSetup: '<rootDir>/dist/tests/helpers/global-setup.js',
  globalTeardown: '<rootDir>/dist/tests/helpers/global-teardown.js',
  roots: ['<rootDir>/dist/tests'],
  testMatch: ['**/*.test.js'],
  testPathIgnorePatterns: ['/node_modules/', ...(STORE === 'postgresql' ? STORE_FREE : ['/dist/tests/postgresql/'])],
  testTimeout: 60000,
  maxWorkers: 2,
  verbose: true,
};
