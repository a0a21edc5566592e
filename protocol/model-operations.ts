/**
 * What the cells' model brokers forward to the model endpoint (LLM_OPERATIONS): a method and a path below
 * LLM_BASE_URL per operation, `*` standing for one path segment. The key the broker adds opens everything the
 * provider keeps for it (stored completions and responses, files, batches: other users' prompts and answers), so
 * an agent gets the operations that answer a request, not the ones that read what is stored. `any`: every GET and
 * POST below the base (for an endpoint that keeps nothing).
 */
export interface ModelOperation {
  readonly method: 'GET' | 'POST';
  /** Path segments below the base; `*` matches any one segment. */
  readonly path: readonly string[];
}

export type ModelOperations = readonly ModelOperation[] | 'any';

export const DEFAULT_MODEL_OPERATIONS = 'POST chat/completions,POST completions,POST embeddings,POST responses,GET models,GET models/*';

/** A path segment: `*`, or characters no server decodes differently (no `%`, no `/`, no `\`, not `.` or `..`). */
const SEGMENT = /^(?:\*|[A-Za-z0-9_~:-][A-Za-z0-9._~:-]*)$/;

/** The operations, or a sentence saying what is wrong. */
export function parseModelOperations(text: string): { operations: ModelOperations } | { error: string } {
  const trimmed = text.trim();
  if (trimmed === 'any') return { operations: 'any' };
  const operations: ModelOperation[] = [];
  for (const item of trimmed.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(GET|POST)\s+(\S+)$/.exec(item);
    if (!m) return { error: `"${item}" is not "GET path" or "POST path" (a path below LLM_BASE_URL, like chat/completions)` };
    const path = m[2].split('/');
    if (!path.every((s) => SEGMENT.test(s))) return { error: `"${item}": each path segment is * or letters, digits and . _ ~ : - (no leading /)` };
    operations.push({ method: m[1] as ModelOperation['method'], path });
  }
  return operations.length > 0 ? { operations } : { error: 'name at least one operation, or any' };
}

/** Whether `method` on `segments` (the request's path below the base) is one of the operations. */
export function operationAllowed(operations: ModelOperations, method: string, segments: readonly string[]): boolean {
  if (operations === 'any') return true;
  return operations.some((op) => op.method === method && op.path.length === segments.length && op.path.every((s, i) => s === '*' || s === segments[i]));
}

/** The operations as LLM_OPERATIONS writes them (for messages). */
export function describeModelOperations(operations: ModelOperations): string {
  return operations === 'any' ? 'any' : operations.map((op) => `${op.method} ${op.path.join('/')}`).join(', ');
}
