/**
 * The first check on every client payload, before its schema: bounded nesting, no keys that could reach
 * a prototype, no control characters in strings, no binary values. A payload that fails gets BAD_REQUEST naming the place.
 */
import { CodedError } from './errors.js';

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
// C0 controls except tab, newline and carriage return, plus DEL.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

export const MAX_DEPTH = 20;

export function assertSafePayload(value: unknown, what: string): void {
  const visit = (v: unknown, path: string, depth: number): void => {
    if (depth > MAX_DEPTH) throw new CodedError('BAD_REQUEST', `invalid ${what}: nested deeper than ${MAX_DEPTH} levels at ${path}`);
    if (typeof v === 'string') {
      if (CONTROL.test(v)) throw new CodedError('BAD_REQUEST', `invalid ${what}: control characters in ${path}`);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    // socket.io carries binary (it arrives as a Buffer): no agent input or field is binary, so refuse it here
    // rather than let it fail later as an agent error.
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) throw new CodedError('BAD_REQUEST', `invalid ${what}: binary value at ${path}; send text or JSON`);
    if (Array.isArray(v)) {
      v.forEach((item, i) => visit(item, `${path}[${i}]`, depth + 1));
      return;
    }
    for (const key of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(key)) throw new CodedError('BAD_REQUEST', `invalid ${what}: key "${key}" is not allowed (at ${path})`);
      if (CONTROL.test(key)) throw new CodedError('BAD_REQUEST', `invalid ${what}: control characters in a key at ${path}`);
      visit((v as Record<string, unknown>)[key], `${path}.${key}`, depth + 1);
    }
  };
  visit(value, what, 0);
}
