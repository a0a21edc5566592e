/**
 * How a Prisma client gets its query compiler (query-compiler.ts): through the config override Prisma offers its
 * own tooling (`__internal.configOverride`, typed in @prisma/client/runtime's client.d.ts, not in the generated
 * client's options), replacing the generated client's loader. tests/query-compiler.test.ts checks it is used.
 */
import type { PrismaClientOptions } from '@prisma/client/runtime/client';

/**
 * The `__internal` option of a PrismaClient whose query compiler comes from `load`; when `load` answers null,
 * the generated client's own loader runs. Prisma keeps a failed load for the life of the thread, so `load` must
 * not throw (a throw falls back too).
 */
export function queryCompilerFrom(load: () => Promise<WebAssembly.Module | null>): Pick<PrismaClientOptions, '__internal'> {
  return {
    __internal: {
      configOverride: (config) => {
        const own = config.compilerWasm;
        if (!own) return config;
        const getQueryCompilerWasmModule = async () => (await load().catch(() => null)) ?? own.getQueryCompilerWasmModule();
        return { ...config, compilerWasm: { ...own, getQueryCompilerWasmModule } };
      },
    },
  };
}
