/**
 * What makes `npm start` quick and helpful, without starting anything: scripts/build.js's freshness check (a
 * step is stale exactly when one of its inputs changed, appeared or disappeared, or its output is gone), and the
 * start banner's token recipes, run as printed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { ROOT } from '../helpers/server';
import { openableUrl, startBanner } from '../../server/start-banner';
import { parseDatabaseUrl } from '../../server/store/database-target';

interface Step {
  name: string;
  inputs: (string | { dir: string })[];
  output: string;
}
const build = require(path.join(ROOT, 'scripts/build.js')) as {
  STEPS: Step[];
  staleSteps: (root: string, steps: Step[]) => { step: Step; hash: string }[];
};

describe('scripts/build.js: a step runs only when its inputs changed', () => {
  const web = build.STEPS.find((s) => s.name === 'web')!;
  let tree: string;
  const stale = () => build.staleSteps(tree, [web]).map(({ step }) => step.name);
  /** What a successful build of the step leaves: the hash of its inputs beside its output. */
  const stamp = () => {
    fs.mkdirSync(path.join(tree, web.output), { recursive: true });
    fs.writeFileSync(path.join(tree, web.output, '.build-inputs'), `${build.staleSteps(tree, [web])[0].hash}\n`);
  };

  beforeEach(() => {
    // A copy of the web step's inputs only.
    tree = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-build-'));
    for (const input of web.inputs) {
      const rel = typeof input === 'string' ? input : input.dir;
      fs.cpSync(path.join(ROOT, rel), path.join(tree, rel), { recursive: true });
    }
  });
  afterEach(() => fs.rmSync(tree, { recursive: true, force: true }));

  test('stale before its first build, up to date after, stale again after an edit, an added file, a removed file', () => {
    expect(stale()).toEqual(['web']);
    stamp();
    expect(stale()).toEqual([]);

    const main = path.join(tree, 'web/src/chat/main.ts');
    const original = fs.readFileSync(main, 'utf8');
    fs.appendFileSync(main, '\n// an edit\n');
    expect(stale()).toEqual(['web']);
    fs.writeFileSync(main, original);
    expect(stale()).toEqual([]);
    // The same content with a new time is not a change (a git checkout, a copy).
    fs.utimesSync(main, new Date(), new Date(Date.now() + 60_000));
    expect(stale()).toEqual([]);

    fs.writeFileSync(path.join(tree, 'web/static/extra.css'), 'body{}');
    expect(stale()).toEqual(['web']);
    fs.rmSync(path.join(tree, 'web/static/extra.css'));
    expect(stale()).toEqual([]);
    fs.rmSync(path.join(tree, 'scripts/build-web.js'));
    expect(stale()).toEqual(['web']);
  });

  test('an output removed (rm -rf web/dist) is rebuilt', () => {
    stamp();
    fs.rmSync(path.join(tree, web.output), { recursive: true });
    expect(stale()).toEqual(['web']);
  });
});

describe('the start banner', () => {
  const database = parseDatabaseUrl('file:./data/atoll.db', '/srv/atoll');
  const line = (banner: string) => /^ +(TOKEN=.*)$/m.exec(banner)?.[1];
  /** Runs a printed `TOKEN=$(…)` line in a shell at the repository root (jsonwebtoken resolves there). */
  const tokenOf = (command: string, env: Record<string, string>) =>
    execFileSync('sh', ['-c', `${command} && printf %s "$TOKEN"`], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' });

  test('names an address a browser can open, even when the server listens on every interface', () => {
    expect(openableUrl('0.0.0.0', 3000)).toBe('http://127.0.0.1:3000');
    expect(openableUrl('::', 3000)).toBe('http://localhost:3000');
    expect(openableUrl('127.0.0.1', 8080)).toBe('http://127.0.0.1:8080');
    expect(openableUrl('::1', 8080)).toBe('http://[::1]:8080');
    expect(startBanner({ host: '0.0.0.0', devLogin: true, jwtSecret: null, database }, 3000)).toContain('Open http://127.0.0.1:3000/ ');
  });

  test('without dev login, its recipe signs a token the secret verifies, and the banner never shows the secret', () => {
    const secret = 'banner-secret-banner-secret-0123';
    const banner = startBanner({ host: '127.0.0.1', devLogin: false, jwtSecret: secret, database }, 3000);
    expect(banner).not.toContain(secret);
    expect(banner).not.toContain('dev-login');
    const token = tokenOf(line(banner)!, { AUTH_JWT_SECRET: secret });
    expect(jwt.verify(token, secret)).toMatchObject({ sub: 'alice' });
  });

  test('without dev login nor AUTH_JWT_SECRET, its recipe signs with the development secret kept beside the database', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-banner-'));
    try {
      const local = parseDatabaseUrl('file:./atoll.db', dir);
      fs.writeFileSync(path.join(dir, '.dev-jwt-secret'), 'dev-secret-dev-secret-dev-secret');
      const banner = startBanner({ host: '127.0.0.1', devLogin: false, jwtSecret: null, database: local }, 3000);
      expect(banner).toContain('AUTH_DEV_LOGIN=1');
      const token = tokenOf(line(banner)!, {});
      expect(jwt.verify(token, 'dev-secret-dev-secret-dev-secret')).toMatchObject({ sub: 'alice' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
