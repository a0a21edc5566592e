/**
 * The folder where the front keeps compiled TypeScript agents. Cells load modules from it, so nobody but the
 * front may write it: agent code never can (Node's permission model lets cells write only their scratch
 * folder, and with CELL_UID_BASE they are other OS users), and the folder must not be someone else's or
 * writable by group or others, or the start is refused (a shared /tmp could hold a folder planted there).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** AGENT_CACHE_DIR's default: one folder per OS user under the OS temp dir. */
export function defaultAgentCacheDir(): string {
  return path.join(os.tmpdir(), `atoll-agent-cache-${typeof process.getuid === 'function' ? process.getuid() : 'user'}`);
}

/** Makes the folder if need be; says what is wrong with it, or null. */
export function prepareAgentCache(dir: string): string | null {
  // Readable by all (cells may be OS users of their own), writable by the front alone.
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stat = fs.lstatSync(dir);
  const ownerOk = typeof process.getuid !== 'function' || stat.uid === process.getuid();
  if (!stat.isDirectory() || !ownerOk || (stat.mode & 0o022) !== 0) {
    return `AGENT_CACHE_DIR ${dir} must be a directory (not a link) owned by this user and writable by no one else (mode ${(stat.mode & 0o777).toString(8)}, owner ${stat.uid})`;
  }
  fs.chmodSync(dir, 0o755); // whatever the umask: cells running as other OS users must read it
  return null;
}
