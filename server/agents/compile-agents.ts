/**
 * TypeScript agents of AGENTS_DIR, compiled by the front at start-up (esbuild, pinned in package.json; it
 * strips types and does not check them) into the agent cache, which cells may read and never write. A file
 * that does not compile stops the start with `file:line:column: message`. Each agent is bundled with the
 * files it imports by relative path; packages stay imports, pinned to the files they resolve to now, so the
 * compiled module finds them from the cache. A compilation is reused while its inputs are byte-identical.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { TYPESCRIPT_AGENT_EXTENSIONS, isAgentFile } from '../../protocol/agent-files.js';
import type { CompiledAgent } from '../../protocol/cell-messages.js';
import type { Logger } from '../logger.js';
import { prepareAgentCache } from './agent-cache.js';

/** Bumped when the way agents are compiled changes: older cache entries are then ignored. */
const RECIPE = 'atoll-agent-1';
/** What `import ... from 'atoll/agent'` means in an agent: the contract (types; its runtime module is empty). */
const CONTRACT_SPECIFIER = 'atoll/agent';

export class AgentCompileError extends Error {
  override name = 'AgentCompileError';
}

/** What a cache entry records besides the module: every file bundled in it, by content hash, and the packages it imports. */
interface Manifest {
  inputs: Record<string, string>;
  packages: string[];
}

export async function compileAgents(opts: { agentsDir: string; cacheDir: string; contractModule: string; log: Logger }): Promise<CompiledAgent[]> {
  if (!fs.existsSync(opts.agentsDir)) return []; // the workers' registry says AGENTS_DIR does not exist
  const sources = fs
    .readdirSync(opts.agentsDir, { withFileTypes: true })
    .filter((d) => d.isFile() && isAgentFile(d.name, TYPESCRIPT_AGENT_EXTENSIONS))
    .map((d) => path.join(opts.agentsDir, d.name))
    .sort();
  if (sources.length === 0) return [];
  const cacheProblem = prepareAgentCache(opts.cacheDir);
  if (cacheProblem) throw new AgentCompileError(cacheProblem);
  try {
    return await compileAll(sources, opts);
  } finally {
    await esbuild.stop(); // esbuild's service process is not needed once the agents are compiled
  }
}

async function compileAll(sources: string[], opts: { cacheDir: string; contractModule: string; log: Logger }): Promise<CompiledAgent[]> {
  const compiled: CompiledAgent[] = [];
  for (const source of sources) {
    const key = createHash('sha256').update(`${RECIPE}\0${esbuild.version}\0${source}\0`).update(fs.readFileSync(source)).digest('hex');
    const module = path.join(opts.cacheDir, `${key}.mjs`);
    const manifestFile = path.join(opts.cacheDir, `${key}.json`);
    if (isFresh(module, manifestFile)) {
      opts.log.info({ agent: source, module, cache: 'hit' }, 'TypeScript agent loaded from the cache');
    } else {
      const started = Date.now();
      const { code, manifest } = await compileOne(source, opts.contractModule);
      writeAtomically(module, code);
      writeAtomically(manifestFile, JSON.stringify(manifest));
      opts.log.info({ agent: source, module, cache: 'miss', compile_ms: Date.now() - started }, 'TypeScript agent compiled');
    }
    compiled.push({ source, module });
  }
  return compiled;
}

async function compileOne(source: string, contractModule: string): Promise<{ code: string; manifest: Manifest }> {
  const packages: string[] = [];
  const resolving = Symbol('resolving');
  // Packages and Node's modules stay imports; a package's specifier becomes the file it resolves to from the
  // agent's folder, since the compiled module lives elsewhere.
  const packagesStayImports: esbuild.Plugin = {
    name: 'packages-stay-imports',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === resolving) return undefined;
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        if (args.path === CONTRACT_SPECIFIER) return { path: pathToFileURL(contractModule).href, external: true };
        const found = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: resolving });
        if (found.errors.length > 0) return { errors: found.errors };
        packages.push(found.path);
        return { path: pathToFileURL(found.path).href, external: true };
      });
    },
  };
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [source],
      absWorkingDir: path.dirname(source),
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: `node${process.versions.node}`,
      write: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [packagesStayImports],
    });
  } catch (err) {
    throw new AgentCompileError(describeFailure(source, err));
  }
  const inputs: Record<string, string> = {};
  for (const input of Object.keys(result.metafile.inputs)) {
    const file = path.resolve(path.dirname(source), input);
    inputs[file] = hashOf(file);
  }
  return { code: result.outputFiles[0]!.text, manifest: { inputs, packages } };
}

/** `file:line:column: message` for each error (esbuild's columns count from 0). */
function describeFailure(source: string, err: unknown): string {
  const errors = (err as { errors?: esbuild.Message[] }).errors;
  if (!errors?.length) return `cannot compile TypeScript agent ${source}: ${(err as Error).message}`;
  const lines = errors.map((e) => (e.location ? `${path.resolve(path.dirname(source), e.location.file)}:${e.location.line}:${e.location.column + 1}: ${e.text}` : `${source}: ${e.text}`));
  return `cannot compile TypeScript agent ${source}:\n${lines.join('\n')}`;
}

/** A cached compilation is used only while every file it bundled is unchanged and every package it imports is there. */
function isFresh(module: string, manifestFile: string): boolean {
  try {
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
    return fs.existsSync(module) && Object.entries(manifest.inputs).every(([file, hash]) => hashOf(file) === hash) && manifest.packages.every((p) => fs.existsSync(p));
  } catch {
    return false;
  }
}

function hashOf(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Readers never see half a file: written beside it under a fresh name, then renamed over it. */
function writeAtomically(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(temporary, text, { mode: 0o644, flag: 'wx' });
  fs.chmodSync(temporary, 0o644); // whatever the umask: cells running as other OS users must read it
  fs.renameSync(temporary, file);
}
