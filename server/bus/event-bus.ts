/**
 * The event bus: carries a committed run event from the node that relayed it to every node where the
 * user's sockets are. The relay publishes an event only after the store committed it, so a bus that loses
 * a message loses no data: sockets catch up from the log (subscribe_run from their cursor).
 *
 * One implementation per folder: in-process/ (one node: a direct call). A second node's bus (Redis) goes in
 * a folder of its own beside it.
 */
import type { RunEventEnvelope } from '../../protocol/events.js';

export type EventListener = (envelope: RunEventEnvelope) => void;

export interface EventBus {
  /** Sends a committed event to every subscriber (on every node), in the order published per run. */
  publish(envelope: RunEventEnvelope): void;
  /** Receives every published event; returns the unsubscribe. */
  subscribe(listener: EventListener): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}
