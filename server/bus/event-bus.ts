/**
 * The event bus: carries a run event from the node whose relay published it to every node holding one of
 * that user's sockets. Subscriptions are per user, so a node receives only the events of users it has a
 * socket of (a Redis bus: a channel per user, subscribed only while the node holds one of that user's sockets).
 *
 * What the relay publishes (server/runs/event-relay.ts): each batch once its log write committed, in seq order
 * per run; a batch whose write failed is not published (counted `atoll_events_dropped_total{reason="not_logged"}`),
 * so a socket never sees an event a replay would not find. A message the bus loses therefore costs no data: the
 * socket replays it from the log (subscribe_run from its cursor), and the bus says when that may be needed (onGap).
 *
 * One implementation per folder: in-process/ (one node: a direct call), redis/ (several nodes: pub/sub, a
 * channel per user; see its header for when it calls onGap).
 */
import type { RunEventEnvelope } from '../../protocol/events.js';

/** What a subscription to one user's events is told. */
export interface BusListener {
  /** One of the user's run events, in the order published per run. */
  onEvent(envelope: RunEventEnvelope): void;
  /**
   * Events of this user may have been missed (a Redis reconnect): every run being followed must be replayed
   * from the log. The in-process bus never calls it.
   */
  onGap(): void;
}

/** Ends a subscription: the listener is not called after it returns; the bus lets go of the channel in its own time. */
export type Unsubscribe = () => void;

export interface EventBus {
  /**
   * Sends an event to the subscribers of `envelope.user_id` on every node, in the order published per run.
   * Returns nothing and never throws: the relay has already committed the event when it publishes it (see
   * above), so there is nothing for it to await or retry. A publish that fails is a gap for the subscribers,
   * not a loss: the bus reports it to them as onGap (a Redis bus: on reconnect) and they replay from the log.
   */
  publish(envelope: RunEventEnvelope): void;
  /**
   * Subscribes to one user's events. Resolves once every event published from then on reaches `listener`
   * (a Redis bus: once SUBSCRIBE is acknowledged), so a caller that awaits it before completing a socket's
   * handshake misses no event of a run started after the connection. Subscribing one user several times
   * gives independent subscriptions.
   */
  subscribe(userId: string, listener: BusListener): Promise<Unsubscribe>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
