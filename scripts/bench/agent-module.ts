/** Loads a bench agent class (plain .mjs) the way Atoll's registry does: default export with execute(ctx). */
import { pathToFileURL } from 'node:url';

export interface BenchCtx {
  userId: string;
  runId: string;
  input: { text: string; [key: string]: unknown };
  signal: AbortSignal;
  emit(type: string, payload: Record<string, unknown>): void;
}

export type BenchAgentClass = new () => { execute(ctx: BenchCtx): Promise<unknown> };

export async function loadAgentClass(file: string): Promise<BenchAgentClass> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new Error(`${file} must default-export an agent class`);
  return mod.default as BenchAgentClass;
}

/** A signal that never aborts: the baselines have no stop or timeout. */
export const NEVER = new AbortController().signal;
