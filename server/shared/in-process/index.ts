/**
 * The shared state of a single node: everything in this process's memory. What it needs of the config is
 * the caps and rates; start() starts the rate limiters' sweeps, stop() ends them.
 */
import type { Config } from '../../config.js';
import type { SharedState } from '../shared-state.js';
import { createInProcessConnectionCounts } from './connection-counts.js';
import { createAccepting } from './accepting.js';
import { createInProcessRateLimiter } from './rate-limiter.js';
import { createInProcessTickets } from './tickets.js';

export type InProcessSharedStateConfig = Pick<Config, 'rateLimits' | 'maxConnectionsPerUser' | 'maxConnectionsPerIp'>;

export function createInProcessSharedState(config: InProcessSharedStateConfig): SharedState {
  const limits = {
    user: createInProcessRateLimiter(config.rateLimits.user),
    ip: createInProcessRateLimiter(config.rateLimits.ip),
    authFailures: createInProcessRateLimiter(config.rateLimits.authFailures),
  };
  const all = Object.values(limits);
  return {
    tickets: createInProcessTickets(),
    limits,
    connections: createInProcessConnectionCounts({ perUser: config.maxConnectionsPerUser, perIp: config.maxConnectionsPerIp }),
    accepting: createAccepting(),
    async start() {
      for (const l of all) l.start();
    },
    async stop() {
      for (const l of all) l.stop();
    },
  };
}
