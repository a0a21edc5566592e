/**
 * One node per database unless they are a cluster: a node started without REDIS_URL holds its database alone
 * and refuses to start beside another node (their queues, caps and recoveries would fight over the same runs);
 * nodes of a cluster share it, and none of them starts beside a single node. Each database implements the
 * lock in its folder (postgresql/node-lock.ts: an advisory lock; sqlite/node-lock.ts: a lock file).
 */
export type NodeMode = 'single' | 'cluster';

/** Another node holds the database in a way this one cannot share: start-up stops with this message. */
export class NodeLockError extends Error {
  override name = 'NodeLockError';
}

export const lockRefusal = (mode: NodeMode, where: string): NodeLockError =>
  new NodeLockError(
    mode === 'single'
      ? `another Atoll node is using ${where}: without REDIS_URL a node runs alone and does not share its database. To run several nodes, set REDIS_URL (and the same AUTH_JWT_SECRET) on every node; otherwise stop the other node first`
      : `a single-node Atoll (started without REDIS_URL) is using ${where}: stop it, or start it with REDIS_URL like this node`,
  );
