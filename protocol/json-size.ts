/**
 * The size of a value's JSON (UTF-8 bytes of JSON.stringify), measured only as far as a limit: a check that
 * refuses anything over the limit then reads no more than the limit's worth of the value's members, however
 * many there are (an object it opens still has its keys listed, by V8, all at once: the transport's and the
 * body's caps bound that). As fast as JSON.stringify within the limit, and it stops where that would go on.
 */

/**
 * Exact for what JSON.parse gives; for anything else (binary, which the payload checks refuse) at most its JSON
 * size, so nothing within the limit is ever called over it. null once over the limit.
 */
export function jsonBytesWithin(value: unknown, limit: number): number | null {
  let total = 0;
  // Explicit, not recursive: how deep a value nests is checked after this (safe-json.ts), and a value nested
  // tens of thousands deep must not overflow the stack here first.
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    total += ownBytes(pending.pop(), pending, limit - total);
    if (total > limit) return null;
  }
  return total;
}

/** What `v` adds itself (its members' keys, separators and brackets), pushing its members onto `pending`. */
function ownBytes(v: unknown, pending: unknown[], room: number): number {
  if (typeof v === 'string') return stringBytes(v, room);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v).length : 4;
  if (typeof v === 'boolean') return v ? 4 : 5;
  if (v === null) return 4;
  if (typeof v !== 'object') return 0;
  // Binary arrives as a Buffer: its JSON is longer than its bytes.
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return 0;
  if (Array.isArray(v)) {
    // Each item is at least one byte, with a comma between each two.
    if (v.length + 1 > room) return room + 1;
    for (const item of v) pending.push(item);
    return 2 + Math.max(0, v.length - 1);
  }
  let bytes = 2;
  let members = 0;
  for (const key of Object.keys(v)) {
    const member = (v as Record<string, unknown>)[key];
    // JSON.stringify leaves these members out.
    if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue;
    // The key, its quotes and colon, and the comma before it (none before the first).
    bytes += stringBytes(key, room - bytes) + 1 + (members > 0 ? 1 : 0);
    members++;
    pending.push(member);
    if (bytes > room) return bytes;
  }
  return bytes;
}

/** A string's JSON, quotes included; room + 1 when it cannot fit in room (each UTF-16 unit is a byte at least). */
function stringBytes(s: string, room: number): number {
  if (s.length + 2 > room) return room + 1;
  // Most strings are printable ASCII, written as they are: counted here, far cheaper than stringifying each.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) return Buffer.byteLength(JSON.stringify(s));
  }
  return s.length + 2;
}
