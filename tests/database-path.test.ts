/**
 * A SQLite path Atoll cannot write stops the start (and `npm run db:migrate`) with the path, the cause and the
 * fix, instead of better-sqlite3's bare "unable to open database file". The usual case is a Docker volume the
 * image's non-root user cannot write: here the server runs as `nobody` against a folder root owns (as root, the
 * way the tests run here; another user gets a folder it may not write, mode 555).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/server';

const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

/** Runs an entry of dist/ as `nobody` (when root) and returns its exit code and stderr. */
function run(entry: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [path.join(ROOT, entry)], {
      cwd: os.tmpdir(),
      // TMPDIR in the test's folder: a front launches its cells (and their scratch root, kept after it ends) first.
      env: { PATH: process.env.PATH ?? '', TMPDIR: path.join(dir, 'tmp'), PORT: '0', CELLS: '1', THREADS_PER_CELL: '1', AUTH_JWT_SECRET: 'path-test-secret-path-test-secret', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    });
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    proc.once('exit', (code) => resolve({ code, stderr }));
  });
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-dbpath-'));
  fs.chmodSync(dir, 0o755);
  fs.mkdirSync(path.join(dir, 'tmp'));
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a data folder the server may not write: the start fails naming the folder, its owner and mode, the user, and the fix', async () => {
  const data = path.join(dir, 'data');
  fs.mkdirSync(data, { mode: asRoot ? 0o755 : 0o555 });
  fs.chmodSync(data, asRoot ? 0o755 : 0o555);
  const uid = asRoot ? NOBODY : process.getuid!();
  const { code, stderr } = await run('dist/server/main.js', { DATABASE_URL: `file:${data}/atoll.db` });
  expect(code).toBe(1);
  expect(stderr).toContain(`cannot write in the folder ${data} for the SQLite database ${data}/atoll.db (EACCES; ${data}: owner uid ${fs.statSync(data).uid}, mode ${asRoot ? 755 : 555}; Atoll runs as uid ${uid}`);
  expect(stderr).toContain('mount a volume the image\'s node user, uid 1000, owns');
  expect(stderr).toContain('set DATABASE_URL=file:<a writable path>');
  expect(stderr).not.toContain('unable to open database file');
  // Nothing was created there.
  expect(fs.readdirSync(data)).toEqual([]);
});

test('npm run db:migrate says the same', async () => {
  const data = path.join(dir, 'data');
  const { code, stderr } = await run('dist/server/store/migrate-cli.js', { DATABASE_URL: `file:${data}/atoll.db` });
  expect(code).toBe(1);
  expect(stderr).toContain(`cannot write in the folder ${data} for the SQLite database ${data}/atoll.db (EACCES;`);
});

test('a path through a file: the start fails naming the file that is not a folder', async () => {
  const file = path.join(dir, 'not-a-folder');
  fs.writeFileSync(file, '');
  fs.chmodSync(file, 0o644);
  const { code, stderr } = await run('dist/server/main.js', { DATABASE_URL: `file:${file}/data/atoll.db` });
  expect(code).toBe(1);
  expect(stderr).toContain(`cannot create the folder ${file}/data for the SQLite database ${file}/data/atoll.db (ENOTDIR; ${file}: a file, not a folder;`);
});

test('a database file the server may not write, in a folder it may: named too', async () => {
  const data = path.join(dir, 'writable');
  fs.mkdirSync(data, { mode: 0o777 });
  fs.chmodSync(data, 0o777);
  fs.writeFileSync(path.join(data, 'atoll.db'), '');
  fs.chmodSync(path.join(data, 'atoll.db'), 0o444);
  if (!asRoot) return; // the owner of a 444 file may still chmod it; only another user shows the refusal
  const { code, stderr } = await run('dist/server/main.js', { DATABASE_URL: `file:${data}/atoll.db` });
  expect(code).toBe(1);
  expect(stderr).toContain(`cannot write ${data}/atoll.db for the SQLite database ${data}/atoll.db (EACCES; ${data}/atoll.db: owner uid 0, mode 444;`);
});
