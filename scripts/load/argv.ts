/**
 * A small strict flag parser shared by the load and bench scripts: `--name value`, `--name=value` and
 * switches. Unknown flags, missing values and repeats are usage errors, so a typo never silently falls
 * back to a default.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type FlagKinds = Record<string, 'value' | 'switch'>;
export type Flags = Map<string, string | true>;

export function parseFlags(argv: readonly string[], kinds: FlagKinds): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = kinds[name];
    if (!kind) throw new UsageError(`unknown flag --${name} (see --help)`);
    if (flags.has(name)) throw new UsageError(`--${name} is given twice`);
    if (kind === 'switch') {
      if (eq >= 0) throw new UsageError(`--${name} is a switch and takes no value`);
      flags.set(name, true);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
    if (value === undefined || value === '') throw new UsageError(`--${name} needs a value (see --help)`);
    flags.set(name, value);
  }
  return flags;
}

export function stringFlag(flags: Flags, name: string, fallback: string): string;
export function stringFlag(flags: Flags, name: string, fallback: null): string | null;
export function stringFlag(flags: Flags, name: string, fallback: string | null): string | null {
  const v = flags.get(name);
  return typeof v === 'string' ? v : fallback;
}

export function numberFlag(flags: Flags, name: string, fallback: number, min: number, max: number, integer = false): number {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return n;
}

export const intFlag = (flags: Flags, name: string, fallback: number, min: number, max: number) => numberFlag(flags, name, fallback, min, max, true);

export const switchFlag = (flags: Flags, name: string) => flags.get(name) === true;
