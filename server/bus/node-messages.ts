/**
 * Control messages between the nodes of one deployment: to one node (its channel) or to every other node
 * (the broadcast channel). Small JSON, checked against NODE_MESSAGE on receipt; one implementation per folder:
 * in-process/ (one node: a message to itself is a direct call, there is no one else), redis/ (pub/sub).
 *
 * Like the event bus, this is at most once: a message sent while Redis is unreachable, or while the receiver's
 * connection is down, is lost. So a message only hurries what durable state decides anyway (a cancel is a flag
 * in the database first, queued runs are found by the claim loop's poll too), and `onGap` says when messages
 * may have been missed (the subscriber connection came back), so a node can look at that state at once.
 */
import { z } from 'zod';

/** Every message a node may send another, discriminated by `type`. */
export const NODE_MESSAGE = z.discriminatedUnion('type', [
  /** Runs were queued: claim now rather than at the next poll. */
  z.object({ type: z.literal('wake') }),
  /** A node's lease lapsed and its runs were taken over: its subscribers' events may be missing. */
  z.object({ type: z.literal('node_died'), node_id: z.string().max(64) }),
  /** Stop a run this node executes (its cancel flag is already in the database). */
  z.object({ type: z.literal('cancel_run'), run_id: z.string().max(100), user_id: z.string().max(200) }),
  /** A run of this user killed a cell of the sender's: its runs go to the cell killers' quarantine cell here too. */
  z.object({ type: z.literal('cell_killer'), user_id: z.string().max(200) }),
]);

export type NodeMessage = z.infer<typeof NODE_MESSAGE>;

/** The most a message may take, serialized: a receiver refuses longer ones without parsing them. */
export const NODE_MESSAGE_MAX_BYTES = 4096;

export interface NodeMessages {
  /** Sends to node `nodeId` (to this node: a direct call). Resolves to whether that node was listening. */
  send(nodeId: string, message: NodeMessage): Promise<boolean>;
  /** Sends to every other node. Resolves to how many received it. */
  broadcast(message: NodeMessage): Promise<number>;
  /** Calls `handler` with each valid message for this node and the id of the node that sent it. */
  onMessage(handler: (message: NodeMessage, from: string) => void): () => void;
  /** Calls `handler` when messages for this node may have been missed (the connection to Redis came back). */
  onGap(handler: () => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}
