/**
 * Reading deploy/compose.yaml as Docker Compose would, without Docker: YAML with merge keys (the `yaml`
 * package), `${VAR}` interpolation from the .env file, environment in map or list form, bind mounts resolved
 * against the compose file's folder, and the runtime stage of a Dockerfile (its WORKDIR, ENV and COPY lines).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: unknown;
  entrypoint?: unknown;
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: { test?: string | string[] };
  depends_on?: string[] | Record<string, { condition?: string }>;
  ports?: (string | number)[];
  expose?: (string | number)[];
  volumes?: string[];
  stop_grace_period?: string;
}

export interface ComposeFile {
  dir: string;
  services: Record<string, Service>;
  /** Every variable the file interpolates, and whether it is required (`${VAR:?…}`). */
  variables: Map<string, { required: boolean }>;
}

/**
 * Compose's interpolation (docs.docker.com, "Interpolation"): `$$` is a literal `$`; `${VAR}`, `$VAR`,
 * `${VAR:-default}` / `${VAR-default}`, `${VAR:?error}` / `${VAR?error}`. An unset required variable throws,
 * as `docker compose` refuses to start.
 */
export function interpolate(text: string, vars: Record<string, string>, seen: ComposeFile['variables']): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, op, arg, bare) => {
    if (all === '$$') return '$';
    const name = (braced ?? bare) as string;
    const required = op === ':?' || op === '?';
    seen.set(name, { required: required || (seen.get(name)?.required ?? false) });
    const value = vars[name];
    const missing = op?.startsWith(':') ? !value : value === undefined;
    if (!missing) return value;
    if (required) throw new Error(`compose would refuse to start: ${name} is not set (${arg})`);
    if (op === ':-' || op === '-') return arg;
    return '';
  });
}

function interpolateAll(value: unknown, vars: Record<string, string>, seen: ComposeFile['variables']): unknown {
  if (typeof value === 'string') return interpolate(value, vars, seen);
  if (Array.isArray(value)) return value.map((v) => interpolateAll(v, vars, seen));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, vars, seen)]));
  return value;
}

/** A .env file as Compose reads it: NAME=value lines, `#` comments, no quoting rules needed here. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m && !line.trimStart().startsWith('#')) out[m[1]] = m[2].trim();
  }
  return out;
}

export function readCompose(file: string, vars: Record<string, string>): ComposeFile {
  // merge: the `<<: *anchor` keys the file uses to give every node the same settings.
  const raw = parseYaml(fs.readFileSync(file, 'utf8'), { merge: true }) as { services: Record<string, unknown> };
  const variables: ComposeFile['variables'] = new Map();
  const services = interpolateAll(raw.services, vars, variables) as Record<string, Service>;
  return { dir: path.dirname(file), services, variables };
}

/** A service's environment as strings (map or `NAME=value` list form; a bare NAME is passed from the host: left out). */
export function environmentOf(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.filter((e) => e.includes('=')).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)]));
}

/** The host path a container path of the service comes from through a bind mount, or null. */
export function hostPathOf(compose: ComposeFile, service: Service, containerPath: string): string | null {
  for (const volume of service.volumes ?? []) {
    const [source, target] = volume.split(':');
    if (!target || !(source.startsWith('.') || source.startsWith('/'))) continue; // a named volume
    if (containerPath === target || containerPath.startsWith(`${target}/`)) {
      return path.join(path.resolve(compose.dir, source), containerPath.slice(target.length));
    }
  }
  return null;
}

/** The build context and Dockerfile of a service, as absolute paths (null when it only pulls an image). */
export function buildOf(compose: ComposeFile, service: Service): { context: string; dockerfile: string } | null {
  if (!service.build) return null;
  const build = typeof service.build === 'string' ? { context: service.build } : service.build;
  const context = path.resolve(compose.dir, build.context ?? '.');
  return { context, dockerfile: path.resolve(context, build.dockerfile ?? 'Dockerfile') };
}

/** The ports a service publishes, as [host, container] (short syntax: "8080:8080", "127.0.0.1:8404:8404", "9090"). */
export function publishedPorts(service: Service): [number, number][] {
  return (service.ports ?? []).map((p) => {
    const parts = String(p).split('/')[0].split(':');
    const container = Number(parts[parts.length - 1]);
    return [parts.length > 1 ? Number(parts[parts.length - 2]) : container, container];
  });
}

/** Compose durations: "30s", "1m30s", "500ms". */
export function durationMs(text: string): number {
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s|us)/g)) ms += Number(m[1]) * { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 }[m[2] as 'h']!;
  return ms;
}

/** The last stage of a Dockerfile: its WORKDIR, ENV (both `ENV A=b C=d` and continued lines) and COPY lines. */
export function runtimeStage(dockerfile: string): { workdir: string; env: Record<string, string>; copies: { from: string | null; src: string; dest: string }[]; cmd: string } {
  const lines = fs.readFileSync(dockerfile, 'utf8').replace(/\\\n/g, ' ').split('\n');
  const start = lines.map((l, i) => (/^FROM\s/i.test(l) ? i : -1)).filter((i) => i >= 0).pop() ?? 0;
  const stage = { workdir: '/', env: {} as Record<string, string>, copies: [] as { from: string | null; src: string; dest: string }[], cmd: '' };
  for (const line of lines.slice(start)) {
    const [instruction, ...rest] = line.trim().split(/\s+/);
    const args = rest.join(' ');
    if (/^WORKDIR$/i.test(instruction)) stage.workdir = path.posix.resolve(stage.workdir, args);
    if (/^ENV$/i.test(instruction)) for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) stage.env[m[1]] = m[2].replace(/^"|"$/g, '');
    if (/^CMD$/i.test(instruction)) stage.cmd = args;
    if (/^COPY$/i.test(instruction)) {
      const from = /--from=(\S+)/.exec(args)?.[1] ?? null;
      const paths = rest.filter((r) => !r.startsWith('--'));
      stage.copies.push({ from, src: paths[0], dest: path.posix.resolve(stage.workdir, paths[paths.length - 1]) });
    }
  }
  return stage;
}

/** A Dockerfile instruction, continuation lines joined, with the stage it belongs to (`AS <name>`, or null). */
export interface DockerInstruction {
  stage: string | null;
  instruction: string;
  args: string;
}

/** Every instruction of a Dockerfile in order; comments dropped, `ARG` defaults substituted into `FROM`. */
export function dockerInstructions(dockerfile: string): DockerInstruction[] {
  const lines = fs.readFileSync(dockerfile, 'utf8').replace(/\\\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  let stage: string | null = null;
  const out: DockerInstruction[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [word, ...rest] = line.split(/\s+/);
    const instruction = word.toUpperCase();
    let text = rest.join(' ');
    if (instruction === 'ARG' && stage === null) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)/.exec(text);
      if (m) args[m[1]] = m[2];
    }
    if (instruction === 'FROM') {
      text = text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[a ?? b!] ?? '');
      stage = /\sAS\s+(\S+)/i.exec(text)?.[1] ?? null;
    }
    out.push({ stage, instruction, args: text });
  }
  return out;
}
