/**
 * The listening wall (guardListening in workers/worker/egress-guards.ts), in a real worker thread: a TCP server on a
 * chosen port (IPv4, IPv6, every address), a unix socket (a path, an abstract name), a UDP socket on a chosen port
 * a client bound to a chosen local port and a TCP server on port 0 (the kernel's pick: binding it again and again reaches
 * a chosen ephemeral port) all work without the wall and are refused with EACCES with it, whatever AGENT_EGRESS says
 * (the wall does not read it); a UDP socket or a client on port 0 still works.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

const GUARDS = path.join(__dirname, '../../workers/worker/egress-guards.js');
const HANDLES = path.join(__dirname, '../../workers/worker/socket-handles.js');

/**
 * Ports free a moment ago, each its own: held together, then let go. (port + 1, + 2… were taken by other processes on
 * a busy machine now and then: EADDRINUSE without the wall.)
 */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => net.createServer());
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

function attemptsIn(walled: boolean, ports: number[], sockPath: string): Promise<{ results: Record<string, string>; refusals: number }> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { walled, ports, sockPath } = workerData;
    const net = require('node:net'), dgram = require('node:dgram'), dns = require('node:dns');
    let refusals = 0;
    if (walled) require(${JSON.stringify(GUARDS)}).guardListening(() => refusals++, require(${JSON.stringify(HANDLES)}).socketHandles({ net, dgram, dns }));
    const results = {};
    const listen = (...args) => new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', (e) => resolve(e.code));
      s.listen(...args, () => s.close(() => resolve('ok')));
    });
    const udp = (type, p, host) => new Promise((resolve) => {
      const s = dgram.createSocket(type);
      s.once('error', (e) => resolve(e.code));
      s.bind(p, host, () => { s.close(); resolve('ok'); });
    });
    (async () => {
      results.tcp_port = await listen(ports[0], '127.0.0.1');
      results.tcp_port_v6 = await listen(ports[1], '::1');
      results.tcp_port_any = await listen(ports[2]);
      results.tcp_port_object = await listen({ port: ports[3], host: '127.0.0.1', exclusive: true });
      results.unix_path = await listen(sockPath);
      results.unix_abstract = await listen('\\0atoll-listen-guards-' + ports[0]);
      results.udp_port = await udp('udp4', ports[4], '127.0.0.1');
      results.udp6_port = await udp('udp6', ports[5], '::1');
      results.client_local_port = await new Promise((resolve) => {
        const s = net.connect({ port: 9, host: '192.0.2.1', localPort: ports[6], localAddress: '127.0.0.1' });
        s.once('error', (e) => { s.destroy(); resolve(e.code === 'EACCES' ? 'EACCES' : 'bound'); });
        s.once('connect', () => { s.destroy(); resolve('bound'); });
        setTimeout(() => { s.destroy(); resolve('bound'); }, 300);
      });
      results.tcp_ephemeral = await listen(0, '127.0.0.1');
      results.udp_ephemeral = await udp('udp4', 0);
      results.client_port_0 = await new Promise((resolve) => {
        const s = net.connect({ port: 9, host: '192.0.2.1', localPort: 0, localAddress: '127.0.0.1' });
        s.once('error', (e) => { s.destroy(); resolve(e.code === 'EACCES' ? 'EACCES' : 'ok'); });
        s.once('connect', () => { s.destroy(); resolve('ok'); });
        setTimeout(() => { s.destroy(); resolve('ok'); }, 300);
      });
      parentPort.postMessage({ results, refusals });
    })();
  `;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { walled, ports, sockPath } });
    w.once('message', (m) => { void w.terminate(); resolve(m); });
    w.once('error', reject);
  });
}

const REFUSED = ['tcp_port', 'tcp_port_v6', 'tcp_port_any', 'tcp_port_object', 'unix_path', 'unix_abstract', 'udp_port', 'udp6_port', 'client_local_port', 'tcp_ephemeral'];

test('without the wall a thread listens where it likes; with it, nowhere, and binds only port 0', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-listen-guards-'));
  try {
    const open = await attemptsIn(false, await freePorts(7), path.join(dir, 'open.sock'));
    for (const name of [...REFUSED.filter((n) => n !== 'tcp_port_v6' && n !== 'udp6_port' && n !== 'client_local_port'), 'udp_ephemeral']) expect([name, open.results[name]]).toEqual([name, 'ok']);
    const walled = await attemptsIn(true, await freePorts(7), path.join(dir, 'walled.sock'));
    for (const name of REFUSED) expect([name, walled.results[name]]).toEqual([name, 'EACCES']);
    expect([walled.results.udp_ephemeral, walled.results.client_port_0]).toEqual(['ok', 'ok']);
    expect(walled.refusals).toBeGreaterThanOrEqual(REFUSED.length);
    expect(fs.existsSync(path.join(dir, 'walled.sock'))).toBe(false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
