/**
 * The README's map of the code and the code's own comments point at files that exist: a file moved or
 * renamed without its references fails here, not in a newcomer's first hour.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers/server';

const TRACKED = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
const TOP = ['server', 'workers', 'protocol', 'prisma', 'web', 'scripts', 'tests', 'ops', 'docs', 'deploy'];

/** Repository paths written in `text` (`server/runs/<file>.ts`, `workers/worker/`), globs and placeholders left out. */
export function pathsIn(text: string): string[] {
  const re = new RegExp(`(?<![\\w./@-])((?:${TOP.join('|')})/[\\w./-]*[\\w/])`, 'g');
  return [...text.matchAll(re)].map((m) => m[1]).filter((p) => !/[*<>]/.test(p));
}

/** What the build writes (not tracked): named as places, never as sources. */
const BUILT = ['web/dist', 'prisma/generated'];
/** What a user makes from a tracked example, ignored by git (`cp deploy/.env.example deploy/.env`). */
const LOCAL = ['deploy/.env'];

/** A path exists if a tracked file is it or lies under it (a folder), before or after compilation. */
function exists(p: string): boolean {
  if ([...BUILT, ...LOCAL].some((b) => p === b || p.startsWith(`${b}/`))) return true;
  const src = p.replace(/^dist\//, '').replace(/\.js$/, '.ts');
  const candidates = [p, src, src.replace(/\.ts$/, '.mjs'), src.replace(/\.ts$/, '.js'), `${src}.ts`];
  return candidates.some((c) => TRACKED.some((f) => f === c || f.startsWith(c.endsWith('/') ? c : `${c}/`)));
}

test('every path the README names exists', () => {
  const named = pathsIn(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  expect(named.length).toBeGreaterThan(40);
  expect([...new Set(named.filter((p) => !exists(p)))]).toEqual([]);
});

test('the README names every folder of the code, so its layout section covers the whole tree', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const folders = new Set(TRACKED.filter((f) => /^(server|workers|protocol)\/.*\.ts$/.test(f)).map((f) => `${path.dirname(f)}/`));
  expect([...folders].filter((d) => !readme.includes(`\`${d}\``)).sort()).toEqual([]);
});

test('every file a source comment names exists in the repository', () => {
  const basenames = new Set(TRACKED.flatMap((f) => [path.basename(f), path.basename(f).replace(/\.ts$/, '.js')]));
  const missing: string[] = [];
  for (const file of TRACKED.filter((f) => /\.(ts|js|mjs)$/.test(f) && !f.startsWith('prisma/generated/'))) {
    const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const comment = /(^\s*(\/\/|\*|\/\*))|\s\/\/\s/.exec(line) ? line : '';
      for (const p of pathsIn(comment)) if (!exists(p)) missing.push(`${file}:${i + 1} ${p}`);
      // A bare file name in a comment (a notes file kept outside, say) must be a file of this repository too.
      for (const m of comment.matchAll(/(?<![\w./-])([\w-]+\.(?:ts|js|mjs|md|sql|toml|prisma))\b/g)) {
        if (!basenames.has(m[1])) missing.push(`${file}:${i + 1} ${m[1]}`);
      }
    });
  }
  expect(missing).toEqual([]);
});

test('the path check can fail', () => {
  expect(pathsIn('see `server/runs/nowhere.ts` and workers/cell/main.ts')).toEqual(['server/runs/nowhere.ts', 'workers/cell/main.ts']);
  expect(exists('server/runs/nowhere.ts')).toBe(false);
  expect(exists('workers/cell/main.ts')).toBe(true);
  expect(exists('dist/workers/cell/main.js')).toBe(true);
  expect(exists('server/runs/')).toBe(true);
});
