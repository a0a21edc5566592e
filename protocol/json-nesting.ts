/**
 * How deep what a run sends may nest: its events' payloads and its result. The cell hands both to the front over
 * its IPC channel (structured clone, `serialization: 'advanced'`), and V8's deserializer reads nesting by recursion:
 * a payload of ~1,930 nested objects passed the cell's checks (JSON.stringify reaches ~4,000) and made the front's
 * channel throw `Maximum call stack size exceeded` where nothing can catch it, so the front exited, every user's
 * runs and sockets with it. A bound far below any stack's, checked where the run's messages are checked.
 */
export const MAX_OUTPUT_DEPTH = 64;

/** Whether objects and arrays in `value` nest more than `max` levels (a flat object is one level). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const visit = (v: unknown, depth: number): boolean => {
    if (v === null || typeof v !== 'object') return false;
    if (depth >= max) return true;
    for (const item of Array.isArray(v) ? v : Object.values(v)) if (visit(item, depth + 1)) return true;
    return false;
  };
  return visit(value, 0);
}
