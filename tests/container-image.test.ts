/**
 * The container image without a Docker engine (none runs here). The Dockerfile is read as written:
 * - its choices are checked: a pinned Node 24 LTS base, tini as PID 1, SIGTERM as the stop signal and a drain that
 *   fits Docker's default stop timeout, the dependency layer before the sources, an npm that reads allowScripts;
 * - its runtime stage is replayed: the build stage's outputs come from this tree (built: the test checks it, the
 *   build stage's `npm run build` is this tree's build), the build stage's prune commands run as written on a copy
 *   (hard links: fast, and the tree's own files stay as they are), the runtime stage's COPY lines copy exactly
 *   their paths into a folder standing for the image's root, and the server starts from exactly that, with the
 *   image's ENV, CMD and HEALTHCHECK, as a non-root user (`nobody`: the tests run as root here), on a /data folder
 *   that user owns. It migrates, serves a run over HTTP with a JWT minted as README says, the page and the health
 *   check, `npm run db:migrate` and `npm start` work inside, and SIGTERM drains it.
 * Departures from the image, each needed to run beside other tests: PORT=0 and HOST=127.0.0.1 (the image listens
 * on 0.0.0.0:3000), one cell of one thread, and the image root is a folder, not `/`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dockerInstructions, runtimeStage } from './helpers/compose-file';
import { ROOT } from './helpers/server';
import { loadConfig } from '../server/config';

const DOCKERFILE = path.join(ROOT, 'Dockerfile');
/** What the runtime stage may copy, at most (measured: README "Docker"). */
const SIZE_BOUND_MIB = 200;
/** Docker's default time between SIGTERM and SIGKILL (`docker stop`, `docker run` without --stop-timeout). */
const DOCKER_STOP_TIMEOUT_MS = 10_000;
/** server/atoll.ts's SHUTDOWN_NOTICE_MS, the sockets' last second, plus closing: at most this after the grace. */
const AFTER_GRACE_MS = 1500;
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;
const SECRET = 'image-test-secret-image-test-secret';

const instructions = dockerInstructions(DOCKERFILE);
const stage = runtimeStage(DOCKERFILE);
const inStage = (name: string) => instructions.filter((i) => i.stage === name);

describe('the Dockerfile', () => {
  test('both stages start from one Node 24 LTS bookworm-slim image pinned by version', () => {
    const froms = instructions.filter((i) => i.instruction === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    expect(froms).toHaveLength(2);
    for (const image of froms) expect(image).toMatch(/^node:24\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
  });

  test('tini is PID 1, SIGTERM stops it, and the drain fits within Docker\'s default stop timeout', () => {
    const runtime = inStage('runtime');
    expect(runtime.find((i) => i.instruction === 'ENTRYPOINT')?.args).toBe('["/usr/bin/tini", "--"]');
    expect(runtime.some((i) => i.instruction === 'RUN' && /apt-get install [^&]*\btini\b/.test(i.args))).toBe(true);
    expect(runtime.find((i) => i.instruction === 'STOPSIGNAL')?.args).toBe('SIGTERM');
    const config = loadConfig({ ...stage.env, AUTH_JWT_SECRET: SECRET }, '/app');
    expect(config.shutdownGraceMs + config.cancelGraceMs + AFTER_GRACE_MS).toBeLessThan(DOCKER_STOP_TIMEOUT_MS);
  });

  test('the dependency layer comes before the sources: a source edit does not reinstall; npm reads allowScripts', () => {
    const build = inStage('build');
    const at = (test: (i: { instruction: string; args: string }) => boolean) => build.findIndex(test);
    const lockCopy = at((i) => i.instruction === 'COPY' && i.args === 'package.json package-lock.json ./');
    const install = at((i) => i.instruction === 'RUN' && /\bnpm ci\b/.test(i.args));
    const sources = at((i) => i.instruction === 'COPY' && i.args === '. .');
    expect(lockCopy).toBeGreaterThanOrEqual(0);
    expect(lockCopy < install && install < sources).toBe(true);
    expect(build.slice(0, install).filter((i) => i.instruction === 'COPY')).toHaveLength(1);
    // allowScripts is read from npm 11.16 on; the image's own npm may be older.
    const npm = build.map((i) => /npm install -g npm@(\d+)\.(\d+)\.(\d+)/.exec(i.args)).find(Boolean);
    expect(npm).toBeTruthy();
    expect(Number(npm![1]) * 1000 + Number(npm![2])).toBeGreaterThanOrEqual(11_016);
    expect(build.findIndex((i) => /npm install -g npm@/.test(i.args))).toBeLessThan(install);
  });
});

describe('the runtime stage, replayed from its COPY lines', () => {
  let work: string;
  let image: string;
  let app: string;
  let server: ChildProcess | null = null;
  let log: Record<string, unknown>[] = [];
  const nonRoot = asRoot ? { uid: NOBODY, gid: NOBODY } : {};

  beforeAll(() => {
    const check = spawnSync(process.execPath, ['scripts/build.js', '--check'], { cwd: ROOT, encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`the tree must be built (npm run build) to stand for the build stage: ${check.stderr}`);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-image-'));
    fs.chmodSync(work, 0o755);

    // The build stage's /app after `npm run build`: the tree without what .dockerignore leaves out, plus the
    // build's outputs (node_modules, dist, web/dist, prisma/generated: ignored in the context, made in the stage).
    const buildWorkdir = inStage('build').find((i) => i.instruction === 'WORKDIR')!.args;
    const buildApp = path.join(work, 'build');
    fs.mkdirSync(buildApp);
    const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    const outputs = ['node_modules', 'dist', 'web', 'prisma'];
    const skip = (name: string) => !outputs.includes(name) && ignored.some((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(name));
    for (const entry of fs.readdirSync(ROOT)) if (!skip(entry)) execFileSync('cp', ['-al', path.join(ROOT, entry), path.join(buildApp, entry)]);
    // Files npm may rewrite get copies of their own, so that the tree's stay untouched.
    for (const f of ['package.json', 'package-lock.json', 'node_modules/.package-lock.json']) {
      fs.rmSync(path.join(buildApp, f), { force: true });
      if (fs.existsSync(path.join(ROOT, f))) fs.copyFileSync(path.join(ROOT, f), path.join(buildApp, f));
    }

    // The build stage's last RUN as written, less its `npm run build` (this tree is built).
    const prune = inStage('build').find((i) => i.instruction === 'RUN' && /npm prune/.test(i.args))!;
    const [first, ...rest] = prune.args.split('&&').map((c) => c.trim());
    expect(first).toBe('npm run build');
    const pruned = spawnSync('sh', ['-c', rest.join(' && ')], { cwd: buildApp, env: { ...process.env, npm_config_offline: 'true' }, encoding: 'utf8' });
    if (pruned.status !== 0) throw new Error(`the build stage's prune failed: ${pruned.stdout}${pruned.stderr}`);

    // The runtime stage: its COPY lines, then `RUN mkdir -p /data && chown node:node /data` (node → nobody here).
    image = path.join(work, 'image');
    for (const copy of stage.copies) {
      expect(copy.from).toBe('build');
      const dest = path.join(image, copy.dest);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      execFileSync('cp', ['-al', path.join(buildApp, path.posix.relative(buildWorkdir, copy.src)), dest]);
    }
    const data = path.join(image, 'data');
    fs.mkdirSync(data);
    if (asRoot) fs.chownSync(data, NOBODY, NOBODY);
    // The image's /tmp, here inside the test's folder: what the server leaves there (its cells' scratch root, kept
    // after a stop) goes with the folder.
    fs.mkdirSync(path.join(image, 'tmp'), { mode: 0o1777 });
    fs.chmodSync(path.join(image, 'tmp'), 0o1777);
    for (const dir of [image, path.join(image, stage.workdir)]) fs.chmodSync(dir, 0o755);
    app = path.join(image, stage.workdir);
  }, 600_000);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGKILL');
      await exited;
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** The image's environment, with the departures the file's comment lists. */
  const env = (): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: path.join(image, 'data'),
    ...stage.env,
    DATABASE_URL: stage.env.DATABASE_URL.replace('file:/data/', `file:${path.join(image, 'data')}/`),
    PORT: '0',
    HOST: '127.0.0.1',
    CELLS: '1',
    THREADS_PER_CELL: '1',
    AUTH_JWT_SECRET: SECRET,
    TMPDIR: path.join(image, 'tmp'),
  });

  test(`what it copies is only what the server loads: under ${SIZE_BOUND_MIB} MiB, no TypeScript, Prisma CLI or Studio, no compiler leftovers`, () => {
    let bytes = 0;
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else bytes += fs.lstatSync(p).size;
      }
    };
    walk(app);
    const mib = bytes / 2 ** 20;
    process.stdout.write(`runtime stage copies ${mib.toFixed(1)} MiB\n`);
    expect(mib).toBeLessThan(SIZE_BOUND_MIB);
    const modules = path.join(app, 'node_modules');
    const present = (p: string) => fs.existsSync(path.join(modules, p));
    for (const gone of ['typescript', 'prisma', '@prisma/studio-core', '@prisma/dev', 'effect', '@electric-sql/pglite', 'jest', 'better-sqlite3/deps', 'better-sqlite3/src', 'better-sqlite3/build/Release/obj.target']) {
      expect([gone, present(gone)]).toEqual([gone, false]);
    }
    // esbuild compiles AGENTS_DIR's TypeScript agents at start-up: a runtime dependency.
    for (const kept of ['@prisma/client', '@prisma/adapter-better-sqlite3', 'better-sqlite3/build/Release/better_sqlite3.node', 'socket.io', 'piscina', 'esbuild', '@esbuild/linux-x64']) {
      expect([kept, present(kept)]).toEqual([kept, true]);
    }
  });

  test('as a non-root user with the image\'s environment and command: migrates, runs a run, serves the page and the health checks, migrates on demand, drains on SIGTERM', async () => {
    const [command, ...args] = JSON.parse(stage.cmd) as string[];
    expect(command).toBe('node');
    server = spawn(process.execPath, args, { cwd: app, env: env(), stdio: ['ignore', 'pipe', 'pipe'], ...nonRoot });
    let stderr = '';
    server.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    log = [];
    const port = await new Promise<number>((resolve, reject) => {
      let buffered = '';
      server!.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          try {
            const entry = JSON.parse(line) as Record<string, unknown>;
            log.push(entry);
            if (entry.msg === 'listening') resolve(entry.port as number);
          } catch {
            // not a log line
          }
        }
      });
      server!.once('exit', (code) => reject(new Error(`the server exited with ${code} before listening:\n${stderr}`)));
    });
    expect(log.find((l) => l.msg === 'database migrated')).toBeDefined();
    const url = `http://127.0.0.1:${port}`;

    // A token as README "Docker" mints one: jsonwebtoken from the image's node_modules, as the image's user.
    const token = execFileSync(process.execPath, ['-e', "console.log(require('jsonwebtoken').sign({ sub: 'alice' }, process.env.AUTH_JWT_SECRET, { expiresIn: '1h' }))"], { cwd: app, env: env(), encoding: 'utf8', ...nonRoot }).trim();
    const api = async (method: string, route: string, body?: unknown) => {
      const res = await fetch(`${url}${route}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const thread = await api('POST', '/v1/threads', {});
    expect(thread.status).toBe(201);
    const started = await api('POST', `/v1/threads/${thread.body.id}/runs`, { agent: 'echo', input: 'from the image' });
    expect(started.status).toBe(202);
    let run = await api('GET', `/v1/runs/${started.body.id}`);
    while (['queued', 'running'].includes(run.body.status)) run = await api('GET', `/v1/runs/${started.body.id}`);
    expect(run.body).toMatchObject({ status: 'completed', result: 'from the image' });

    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script');
    const assets = await fetch(`${url}/assets/chat.js`);
    expect(assets.status).toBe(200);

    // The image's HEALTHCHECK command, as written, run as the image's user.
    const healthcheck = inStage('runtime').find((i) => i.instruction === 'HEALTHCHECK')!.args;
    const probe = /\bCMD\s+(.*)$/.exec(healthcheck)![1];
    const healthy = spawnSync('sh', ['-c', probe], { cwd: app, env: { ...env(), PORT: String(port) }, ...nonRoot });
    expect(healthy.status).toBe(0);

    // README's `npm run db:migrate` inside the image: nothing to build there, nothing left to apply.
    const migrate = spawnSync('npm', ['run', '--silent', 'db:migrate'], { cwd: app, env: env(), encoding: 'utf8', ...nonRoot });
    expect({ status: migrate.status, stderr: migrate.stderr }).toMatchObject({ status: 0, stderr: expect.stringContaining('nothing to build') });
    expect(JSON.parse(migrate.stdout.trim().split('\n').pop()!)).toMatchObject({ applied: [] });

    // 'close', not 'exit': the last lines it wrote may still be in its stdout pipe when it exits.
    const exited = new Promise<number | null>((resolve) => server!.once('close', resolve));
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(log.map((l) => l.msg)).toEqual(expect.arrayContaining(['shutting down', 'stopped']));
  }, 180_000);

  test('npm start inside the image builds nothing, starts, and says how to get a token without dev login', async () => {
    const proc = spawn('npm', ['start'], { cwd: app, env: env(), stdio: ['ignore', 'ignore', 'pipe'], detached: true, ...nonRoot });
    let stderr = '';
    const banner = await new Promise<string>((resolve, reject) => {
      proc.stderr!.setEncoding('utf8').on('data', (c: string) => {
        stderr += c;
        if (/\n {2}Then: .*\n/.test(stderr)) resolve(stderr);
      });
      proc.once('exit', (code) => reject(new Error(`npm start exited with ${code} before its banner:\n${stderr}`)));
    });
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    process.kill(-proc.pid!, 'SIGTERM');
    await exited;
    expect(banner).toContain('build: a built tree without sources (the container image): nothing to build');
    expect(banner).toContain('Token (dev login is off): a JWT signed with AUTH_JWT_SECRET');
    expect(banner).not.toContain(SECRET);
  }, 120_000);
});
