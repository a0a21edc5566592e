/**
 * The cells, launched first thing: a cell takes a second or two to warm its worker threads, the front about as
 * long to load its own modules, migrate and learn what workers may query. Launched before the front loads the
 * rest of itself (server/main.ts), the two overlap; the front starts listening once both are done
 * (server/atoll.ts). Only what launching needs is imported here, so that it costs the front almost nothing.
 */
import path from 'node:path';
import { compileAgents } from '../agents/compile-agents.js';
import { defaultAgentCacheDir } from '../agents/agent-cache.js';
import type { Config } from '../config.js';
import { cellConfigOf, supervisorSettingsOf } from '../config-views.js';
import type { Logger } from '../logger.js';
import { providerOf } from '../store/database-target.js';
import { cellSandboxWarning, clearScratchRoot, defaultScratchRoot, removeStaleScratchRoots } from './cell-sandbox.js';
import { createCellSupervisor, type CellSupervisor } from './supervisor.js';

export interface LaunchedCells {
  /** Its serving cells already starting; start(listener) waits for them. */
  readonly cells: CellSupervisor;
  /** What the cells were configured with, for the parts of the front that check against it. */
  readonly dbProvider: ReturnType<typeof providerOf>;
}

export async function launchCells(config: Config, log: Logger, root: string): Promise<LaunchedCells> {
  // AGENTS_DIR's TypeScript agents, compiled first: one that does not compile stops the start before anything opens.
  const agentCacheDir = config.agentCacheDir ?? defaultAgentCacheDir();
  const compiledAgents = config.agentsDir ? await compileAgents({ agentsDir: config.agentsDir, cacheDir: agentCacheDir, contractModule: path.join(root, 'dist/workers/agent-contract.js'), log }) : [];
  const scratchRoot = config.scratchRoot ?? defaultScratchRoot();
  if (!config.scratchRoot) {
    const removed = removeStaleScratchRoots();
    if (removed.length) log.info({ removed: removed.length }, 'removed the scratch folders of fronts that are gone');
  } else {
    const cleared = clearScratchRoot(config.scratchRoot);
    if (cleared) log.info({ cleared }, 'set aside what a former front left in SCRATCH_DIR');
  }
  const sandboxWarning = cellSandboxWarning({ root, agentsDir: config.agentsDir, uidBase: config.cellUidBase });
  if (sandboxWarning) log.warn(sandboxWarning);
  const dbProvider = providerOf(config.database);
  const cells = createCellSupervisor({
    settings: supervisorSettingsOf(config),
    cellEntry: path.join(root, 'dist/workers/cell/main.js'),
    sandbox: { mode: config.cellSandbox, root, agentsDir: config.agentsDir, agentCacheDir: compiledAgents.length ? agentCacheDir : null, scratchRoot, uidBase: sandboxWarning ? 0 : config.cellUidBase },
    log,
    cellConfig: cellConfigOf(config, dbProvider, compiledAgents),
  });
  cells.launch();
  return { cells, dbProvider };
}
