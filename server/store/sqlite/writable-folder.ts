/**
 * Before SQLite touches its file: the file's folder must exist (it is created) and this process must be able to
 * write there, the file itself and SQLite's -wal and -shm files beside it. better-sqlite3 says only "unable to
 * open database file"; this names the path, the cause and the fix (a Docker volume that the image's `node` user,
 * uid 1000, cannot write is the usual case: README "Docker").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class DatabasePathError extends Error {
  override name = 'DatabasePathError';
}

/** "uid 1000 (node)", or the bare uid when it has no name. */
function whoAmI(): string {
  const uid = process.getuid?.() ?? -1;
  try {
    return `uid ${uid} (${os.userInfo().username})`;
  } catch {
    return `uid ${uid}`;
  }
}

/** Owner and permission bits of the nearest existing path at or above `p`, e.g. "/data: owner uid 0, mode 755". */
function ownership(p: string, folder: boolean): string {
  for (let at = p; ; at = path.dirname(at)) {
    try {
      const s = fs.statSync(at);
      return `${at}: ${folder && !s.isDirectory() ? 'a file, not a folder; ' : ''}owner uid ${s.uid}, mode ${(s.mode & 0o777).toString(8)}`;
    } catch {
      if (at === path.dirname(at)) return `${p}: not found`;
    }
  }
}

function refuse(what: string, target: string, file: string, err: unknown): never {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'EACCES';
  const me = whoAmI();
  const folder = target !== file && !target.startsWith(`${file}-`);
  const fix = folder ? `Make ${path.dirname(file)} a folder that ${me} can write` : `Make ${target} and its folder writable by ${me}`;
  throw new DatabasePathError(
    `cannot ${what} ${target} for the SQLite database ${file} (${code}; ${ownership(target, folder)}; Atoll runs as ${me}). ` +
      `${fix} (in Docker: mount a volume the image's node user, uid 1000, owns, ` +
      `e.g. a named volume \`-v atoll-data:/data\`, or \`chown 1000 <host folder>\`), or set DATABASE_URL=file:<a writable path>`,
  );
}

export function ensureWritableFolder(file: string): void {
  const dir = path.dirname(file);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    refuse('create the folder', dir, file, err);
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    refuse('write in the folder', dir, file, err);
  }
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.accessSync(f, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') refuse('write', f, file, err);
    }
  }
}
