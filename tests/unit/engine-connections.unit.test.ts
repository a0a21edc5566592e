/**
 * The per-address count of engine.io connections (server/realtime/engine-connections.ts) with fake connections:
 * the bound, the release on close, a handshake that slipped past the check, and the connect timeout.
 */
import { EventEmitter } from 'node:events';
import { createEngineConnections, type EngineConnection } from '../../server/realtime/engine-connections';

class FakeConnection extends EventEmitter {
  readyState = 'open';
  closedWith: boolean | null = null;
  constructor(readonly request: EngineConnection['request']) {
    super();
  }
  close(discard?: boolean): void {
    if (this.readyState === 'closed') return;
    this.closedWith = discard ?? false;
    this.readyState = 'closed';
    this.emit('close');
  }
}

/** A handshake request from `address`; `upgrade`: it came in as a WebSocket upgrade (its TCP socket is its own). */
const requestFrom = (address: string, upgrade = false) =>
  ({ headers: upgrade ? { upgrade: 'websocket' } : {}, socket: { remoteAddress: address, destroyed: false, destroy() { this.destroyed = true; } } }) as unknown as EngineConnection['request'];

describe('engine connections per address', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());
  const make = () => createEngineConnections({ maxPerAddress: 2, connectTimeoutMs: 10_000, addressOf: (req) => req.socket.remoteAddress ?? 'unknown' });

  test('refuses past the bound, per address; a close frees a place', () => {
    const engines = make();
    const a = [new FakeConnection(requestFrom('10.0.0.1')), new FakeConnection(requestFrom('10.0.0.1'))];
    expect(engines.refusal(requestFrom('10.0.0.1'))).toBeNull();
    a.forEach((c) => engines.track(c));
    expect(engines.refusal(requestFrom('10.0.0.1'))).toMatch(/too many connections from this address/);
    expect(engines.refusal(requestFrom('10.0.0.2'))).toBeNull();
    a[0].close();
    expect(engines.openFrom('10.0.0.1')).toBe(1);
    expect(engines.refusal(requestFrom('10.0.0.1'))).toBeNull();
    a[1].close();
    expect(engines.openFrom('10.0.0.1')).toBe(0);
  });

  test('a connection that passed the check with others and goes past the bound is closed at once', () => {
    const engines = make();
    const three = [1, 2, 3].map(() => new FakeConnection(requestFrom('10.0.0.1')));
    three.forEach((c) => engines.track(c));
    expect(three.map((c) => c.readyState)).toEqual(['open', 'open', 'closed']);
    expect(engines.openFrom('10.0.0.1')).toBe(2);
  });

  test('a WebSocket connection closed for its address or its connect timeout loses its TCP socket too; a polling one keeps it', () => {
    const engines = make();
    const polling = new FakeConnection(requestFrom('10.0.0.1'));
    const upgraded = new FakeConnection(requestFrom('10.0.0.1', true));
    const over = new FakeConnection(requestFrom('10.0.0.1', true));
    [polling, upgraded, over].forEach((c) => engines.track(c));
    expect((over.request.socket as unknown as { destroyed: boolean }).destroyed).toBe(true);
    jest.advanceTimersByTime(10_000);
    expect([polling, upgraded].map((c) => c.closedWith)).toEqual([true, true]);
    expect([polling, upgraded].map((c) => (c.request.socket as unknown as { destroyed: boolean }).destroyed)).toEqual([false, true]);
  });

  test('before its socket, a connection may send CONNECT to / only, a few times: anything else closes it', () => {
    const refused: string[] = [];
    const engines = createEngineConnections({ maxPerAddress: 10, connectTimeoutMs: 10_000, addressOf: (req) => req.socket.remoteAddress ?? 'unknown', onRefusedPacket: (_ip, why) => refused.push(why) });
    const conns = [1, 2, 3, 4, 5].map((i) => new FakeConnection(requestFrom(`10.0.1.${i}`)));
    conns.forEach((c) => engines.track(c));
    const [connecting, flooding, otherNamespace, binary, retrying] = conns;
    connecting.emit('packet', { type: 'message', data: '0{"token":"t"}' });
    connecting.emit('packet', { type: 'pong' });
    flooding.emit('packet', { type: 'message', data: '2["x"]' });
    otherNamespace.emit('packet', { type: 'message', data: '0/x,' });
    binary.emit('packet', { type: 'message', data: Buffer.from('0') });
    // A client whose CONNECT was refused tries again on the same connection: a few times.
    for (let i = 0; i < 5; i++) retrying.emit('packet', { type: 'message', data: '0' });
    const afterFive = retrying.readyState;
    retrying.emit('packet', { type: 'message', data: '0' });
    expect({ states: conns.map((c) => c.readyState), afterFive }).toEqual({ states: ['open', 'closed', 'closed', 'closed', 'closed'], afterFive: 'open' });
    expect(refused).toEqual(['a packet before CONNECT', 'a CONNECT to another namespace than /', 'a binary frame nothing announced', 'more than 5 CONNECTs without a socket']);
  });

  test('once its socket joined, a connection may send events and its DISCONNECT only: no CONNECT, acknowledgement or binary packet', () => {
    const engines = make();
    const packets: Record<string, unknown> = {
      event: '2["x",{}]',
      eventWithAck: '21["x",{}]',
      disconnect: '1',
      connectAgain: '0',
      connectElsewhere: '0/x,',
      ack: '31[]',
      binaryEventOfTwo: '52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      binaryAck: '61-[]',
      binaryFrame: Buffer.alloc(16),
    };
    const closed: Record<string, boolean> = {};
    // An engine.io message's data is the socket.io packet: its type first.
    Object.entries(packets).forEach(([name, data], i) => {
      const conn = new FakeConnection(requestFrom(`10.0.2.${i}`));
      engines.track(conn);
      conn.emit('packet', { type: 'message', data: '0' });
      engines.socketJoined(conn);
      conn.emit('packet', { type: 'message', data });
      closed[name] = conn.readyState === 'closed';
    });
    expect(closed).toEqual({ event: false, eventWithAck: false, disconnect: false, connectAgain: true, connectElsewhere: true, ack: true, binaryEventOfTwo: true, binaryAck: true, binaryFrame: true });
  });

  test('a binary event of one attachment is followed by that attachment, and nothing else', () => {
    const engines = make();
    const sequences: Record<string, unknown[]> = {
      whole: ['51-["x",{"_placeholder":true,"num":0}]', Buffer.alloc(16), '2["y"]'],
      anotherFrame: ['51-["x",{"_placeholder":true,"num":0}]', Buffer.alloc(16), Buffer.alloc(16)],
      eventInstead: ['51-["x",{"_placeholder":true,"num":0}]', '2["y"]'],
    };
    const states: Record<string, string> = {};
    Object.entries(sequences).forEach(([name, packets], i) => {
      const conn = new FakeConnection(requestFrom(`10.0.3.${i}`));
      engines.track(conn);
      conn.emit('packet', { type: 'message', data: '0' });
      engines.socketJoined(conn);
      for (const data of packets) conn.emit('packet', { type: 'message', data });
      states[name] = conn.readyState;
    });
    expect(states).toEqual({ whole: 'open', anotherFrame: 'closed', eventInstead: 'closed' });
  });

  test('the connect timeout closes (discarding) a connection without a socket, not one with a socket', () => {
    const engines = make();
    const bare = new FakeConnection(requestFrom('10.0.0.1'));
    const joined = new FakeConnection(requestFrom('10.0.0.1'));
    engines.track(bare);
    engines.track(joined);
    engines.socketJoined(joined);
    jest.advanceTimersByTime(9_999);
    expect(bare.readyState).toBe('open');
    jest.advanceTimersByTime(1);
    expect(bare.closedWith).toBe(true);
    expect(joined.readyState).toBe('open');
    expect(engines.openFrom('10.0.0.1')).toBe(1);
  });
});
