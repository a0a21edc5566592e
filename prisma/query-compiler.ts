/**
 * Prisma's query compiler is WebAssembly: 3.3 MB of code that Prisma's generated client decodes from a 4.4 MB
 * base64 module and compiles in each isolate that loads it (each of a cell's workers: ~20 MiB and 0.1-0.3 s).
 * Compiled here instead: once per cell, by its main thread (workers/cell/cell-runtime.ts: no agent code runs
 * there, so no worker can hand its siblings a module of its own), and sent to each worker that asks, which only
 * instantiates it, with memory and state of its own (V8 shares a compiled module's code between the threads of
 * a process); and once in the front, for its own clients. query-compiler-loader.ts hands it to a client.
 */
import fs from 'node:fs/promises';
import type { DbProvider } from '../protocol/cell-messages.js';

/**
 * The module each generated client (prisma/generated/<kind>/internal/class.ts) loads for itself: one line,
 * `const wasm = "<base64>"`. tests/query-compiler.test.ts checks the generated clients still name
 * these files and that they still compile.
 */
export const QUERY_COMPILER_SOURCE: Readonly<Record<DbProvider, string>> = {
  sqlite: '@prisma/client/runtime/query_compiler_fast_bg.sqlite.wasm-base64.js',
  postgres: '@prisma/client/runtime/query_compiler_fast_bg.postgresql.wasm-base64.js',
};

/** Base64 characters decoded at a time (a multiple of 4). */
const CHUNK = 1 << 16;

/**
 * Decoded from the file's bytes in small pieces, not loaded as a module: that took ~140 ms (parsing a 4.4 MB
 * string literal) and kept the string (the generated client keeps the module: ~9 MB of heap in the front) or left
 * it for a full GC (~20 MiB of a cell's RSS, and an idle cell may never run one). These buffers go at the next
 * young-generation collection.
 */
export async function compileQueryCompiler(provider: DbProvider): Promise<WebAssembly.Module> {
  const text = await fs.readFile(require.resolve(QUERY_COMPILER_SOURCE[provider]));
  const start = text.indexOf('"') + 1;
  const end = text.indexOf('"', start);
  if (start === 0 || end < 0) throw new Error(`${QUERY_COMPILER_SOURCE[provider]}: no base64 string literal in it (a Prisma upgrade changed its format?)`);
  const bytes = Buffer.allocUnsafe(Math.ceil(((end - start) * 3) / 4));
  let length = 0;
  for (let i = start; i < end; i += CHUNK) length += bytes.write(text.toString('latin1', i, Math.min(end, i + CHUNK)), length, 'base64');
  return WebAssembly.compile(bytes.subarray(0, length));
}
