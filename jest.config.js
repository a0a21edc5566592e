// Jest runs the compiled tests (npm test builds first): worker threads and cells are plain JavaScript
// anyway, and a TypeScript transform would not reach them.
//
// One pass per store, ATOLL_TEST_DATABASE=sqlite (the default) or postgresql (scripts/test-stores.js runs both):
// - the SQLite pass runs every file except the PostgreSQL-only ones (dist/tests/postgresql/, and the cluster's
//   dist/tests/cluster/: several nodes need PostgreSQL and Redis);
// - the PostgreSQL pass runs the files whose outcome the store can change, those included. The rest ran already
//   in the SQLite pass: files that reach no database (STORE_FREE), and files that start a server only to test
//   what the store plays no part in (STORE_BLIND), which keeps both passes together well under 15 minutes on 2
//   cores. A new test file runs in both passes unless it is listed here.
const STORE = process.env.ATOLL_TEST_DATABASE || 'sqlite';
if (!['sqlite', 'postgresql'].includes(STORE)) throw new Error(`ATOLL_TEST_DATABASE must be sqlite or postgresql (got ${JSON.stringify(STORE)})`);

const file = (name) => `/dist/tests/${name}\\.test\\.js$`;

/** Files that reach no database (or only SQLite's own): the SQLite pass only. */
const STORE_FREE = [
  '/dist/tests/unit/',
  // The Redis parts (bus, shared state, node messages) against the real Redis, no database.
  '/dist/tests/redis/',
  ...['architecture', 'cpu-governor', 'delivery', 'docs-paths', 'event-window', 'run-emitter', 'socket-order'].map(file),
  // Learns both providers' statements with no database.
  file('worker-query-gate'),
  // SQLite's migrations against the schema (PostgreSQL's are a PostgreSQL-only file).
  file('schema'),
  // deploy/ against the config schema, promtool and haproxy: files only.
  file('deploy-compose'),
  // `npm start`, the container image's runtime stage, an unwritable SQLite folder and a full disk: SQLite files of
  // their own.
  ...['start', 'container-image', 'database-path', 'disk-full', 'disk-full-shutdown', 'stop-disk-full'].map(file),
  // A cell process played by the test, no front.
  file('event-fairness'),
  // run-scratch.ts on a folder of its own, as a non-root user.
  file('run-scratch'),
  // SQLite's chunked thread delete, on a database file of its own.
  file('thread-delete-stall'),
  file('thread-delete-races'),
];

/**
 * Files that start a server to test cells, sockets, the browser page or the model broker: what they assert
 * (walls, backpressure, supervision, rendering) does not depend on the store, and the store paths they pass
 * through (accept, events, finish, resync) are the PostgreSQL pass's spine, realtime, lifecycle and failures.
 */
const STORE_BLIND = [
  'browser', // the page; its HTTP and socket calls are http-api's and realtime's
  'cell-supervision', // wedged and crashing cells
  'containment', // memory and CPU walls of cells
  'cell-killers', // a user whose run killed its cell runs in quarantine cells
  'scratch-budget', // what a run may leave on disk
  'outbound-budget', // socket write budgets
  'stalled-client', // socket backpressure
  'llm-agent', // the model broker and tool loop
  'llm-broker', // the model key's wall
  'worker-reset', // worker-thread hygiene
  'limits-burst', // the front's rate limits
  'input-edges', // request validation
  'alerts', // metrics born at 0 and a real Prometheus's alerts
  'trust-proxy', // the client's address behind a proxy, for the front's per-address limits
  'engine-connections', // engine.io sessions per address before sign-in
  'socket-flood', // a socket flooding messages is cut off
  'long-token', // a socket's expiry timer for tokens living over ~24.8 days
  'traces', // OpenTelemetry spans of runs
  'trace-name-cardinality', // how many tool span names a front gives out
  'ts-agents', // TypeScript agents compiled at start-up, input declarations checked at acceptance
  'egress', // AGENT_EGRESS_ALLOW reaching the workers
  'http-page-size', // the HTTP pages' size cap (the route's; the reads under it are http-api's)
  'http-stall', // the HTTP server's limits on clients that do not read or send
  'metrics-token', // who may read /metrics
  'haproxy-metrics', // the shipped HAProxy file's /metrics deny
  'scratch-deep-tree', // runs' scratch leftovers removed
  'scratch-deep-restart', // a start on a SCRATCH_DIR a former front left
  'threadpool-demotion', // the CPU governor and the cell's own OS threads
  'idle-spin', // a worker kept busy by what its run left
  'log-interleave', // what runs print beside the front's own log lines
].map(file);

module.exports = {
  testEnvironment: '<rootDir>/dist/tests/helpers/database-environment.js',
  globalSetup: '<rootDir>/dist/tests/helpers/global-setup.js',
  globalTeardown: '<rootDir>/dist/tests/helpers/global-teardown.js',
  roots: ['<rootDir>/dist/tests'],
  testMatch: ['**/*.test.js'],
  testPathIgnorePatterns: ['/node_modules/', ...(STORE === 'postgresql' ? [...STORE_FREE, ...STORE_BLIND] : ['/dist/tests/postgresql/', '/dist/tests/cluster/'])],
  testTimeout: 60000,
  maxWorkers: 2,
  verbose: true,
};
