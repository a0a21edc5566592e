/** Which files of AGENTS_DIR are agents: the front (it compiles the TypeScript ones) and the workers (they load them) agree here. */

/** TypeScript agents: the front compiles them at start-up, workers load what it compiled. */
export const TYPESCRIPT_AGENT_EXTENSIONS = ['.ts', '.mts'];
export const AGENT_EXTENSIONS = ['.js', '.mjs', ...TYPESCRIPT_AGENT_EXTENSIONS];

/** Tests and type declarations sit beside agents without being agents. */
const NOT_AGENTS = /\.(test\.[cm]?[jt]s|d\.[cm]?ts)$/;

export function isAgentFile(name: string, extensions: readonly string[]): boolean {
  const dot = name.lastIndexOf('.');
  return dot > 0 && extensions.includes(name.slice(dot)) && !NOT_AGENTS.test(name);
}
