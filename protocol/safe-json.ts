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
  // The keys from the payload down to the value being looked at. The place is written out only for a refusal:
  // a string per value would cost a wide payload more than all the checks (~1 µs per key).
  const trail: (string | number)[] = [];
  const at = () => what + trail.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  const visit = (v: unknown, depth: number): void => {
    if (depth > MAX_DEPTH) throw new CodedError('BAD_REQUEST', `invalid ${what}: nested deeper than ${MAX_DEPTH} levels at ${at()}`);
    if (typeof v === 'string') {
      if (CONTROL.test(v)) throw new CodedError('BAD_REQUEST', `invalid ${what}: control characters in ${at()}`);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    // socket.io carries binary (it arrives as a Buffer): no agent input or field is binary, so refuse it here
    // rather than let it fail later as an agent error.
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) throw new CodedError('BAD_REQUEST', `invalid ${what}: binary value at ${at()}; send text or JSON`);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        trail.push(i);
        visit(v[i], depth + 1);
        trail.pop();
      }
      return;
    }
    for (const key of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(key)) throw new CodedError('BAD_REQUEST', `invalid ${what}: key "${key}" is not allowed (at ${at()})`);
      if (CONTROL.test(key)) throw new CodedError('BAD_REQUEST', `invalid ${what}: control characters in a key at ${at()}`);
      trail.push(key);
      visit((v as Record<string, unknown>)[key], depth + 1);
      trail.pop();
    }
  };
  visit(value, 0);
}
