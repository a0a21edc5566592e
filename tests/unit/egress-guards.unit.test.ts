/**
 * The egress wall (workers/worker/egress-guards.ts), in a real worker thread: every way a thread connects (net,
 * http, fetch, a name that resolves to loopback, IPv6 and IPv4-mapped forms, a unix socket, UDP) reaches this
 * process's servers without the wall and is refused with EACCES with it; AGENT_EGRESS_ALLOW lets a subnet through;
 * a public address is never refused under `public`. And the address rules themselves.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { AgentEgress } from '../../protocol/cell-messages';
import ipaddr from 'ipaddr.js';
import { addressBytes, egressAllows } from '../../workers/worker/egress-guards';

const GUARDS = path.join(__dirname, '../../workers/worker/egress-guards.js');
const HANDLES = path.join(__dirname, '../../workers/worker/socket-handles.js');

interface Targets {
  tcpPort: number;
  v6: boolean;
  unixPath: string;
  udpPort: number;
}
type Outcome = { results: Record<string, string>; refusals: number };

/** What a thread gets when it tries each way out, under a policy (or with no wall at all). */
function attemptsIn(policy: AgentEgress | null, targets: Targets): Promise<Outcome> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { policy, tcpPort, v6, unixPath, udpPort } = workerData;
    const net = require('node:net'), dgram = require('node:dgram'), http = require('node:http');
    let refusals = 0;
    const dns = require('node:dns');
    if (policy) require(${JSON.stringify(GUARDS)}).guardEgress(policy, () => refusals++, require(${JSON.stringify(HANDLES)}).socketHandles({ net, dgram, dns }));
    const results = {};
    const attempt = async (name, fn) => {
      try { results[name] = String(await fn()); } catch (err) { results[name] = err?.cause?.code || err?.code || String(err); }
    };
    const connect = (opts) => new Promise((resolve, reject) => {
      const s = net.connect(opts, () => { s.destroy(); resolve('ok'); });
      s.on('error', reject);
    });
    const udpSend = (type, host) => new Promise((resolve, reject) => {
      const s = dgram.createSocket(type);
      s.send('hello', udpPort, host, (err) => { s.close(); err ? reject(err) : resolve('ok'); });
    });
    (async () => {
      await attempt('tcp_loopback', () => connect({ port: tcpPort, host: '127.0.0.1' }));
      await attempt('tcp_name', () => connect({ port: tcpPort, host: 'localhost' }));
      await attempt('http_get', () => new Promise((resolve, reject) => http.get('http://127.0.0.1:' + tcpPort + '/', (res) => { res.resume(); resolve('ok'); }).on('error', reject)));
      await attempt('fetch', async () => { await (await fetch('http://127.0.0.1:' + tcpPort + '/')).text(); return 'ok'; });
      if (v6) await attempt('tcp_v6_loopback', () => connect({ port: tcpPort, host: '::1' }));
      if (v6) await attempt('tcp_v4_mapped', () => connect({ port: tcpPort, host: '::ffff:127.0.0.1' }));
      await attempt('unix_socket', () => connect({ path: unixPath }));
      // A unix socket path that reads like a public address (the cell's folder is writable: one could be made there).
      await attempt('unix_public_name', () => connect({ path: '8.8.8.8' }));
      // libuv reads only 39 characters before a zone: this is 127.0.0.1 to the kernel, 127.0.0.10 to a naive check.
      if (v6) await attempt('zone_truncated', () => connect({ port: tcpPort, host: '0000:0000:0000:0000:0000:ffff:127.0.0.10%lo' }));
      await attempt('udp_send', () => udpSend('udp4', '127.0.0.1'));
      await attempt('udp_connect', () => new Promise((resolve, reject) => {
        const s = dgram.createSocket('udp4');
        s.on('error', (err) => { s.close(); reject(err); });
        s.connect(udpPort, '127.0.0.1', (refused) => {
          if (refused) return s.emit('error', refused);
          s.send('connected', (err) => { s.close(); err ? reject(err) : resolve('ok'); });
        });
      }));
      // dgram's udp6 handles assign connect6/send6 over their own connect/send: the wall must leave that possible.
      if (v6) await attempt('udp6_send', () => udpSend('udp6', '::1'));
      // c-ares makes sockets of its own: a loopback "DNS server" would receive a query whose name the agent chose.
      await attempt('dns_server', () => new Promise((resolve, reject) => {
        const resolver = new dns.Resolver({ timeout: 200, tries: 1 });
        resolver.setServers(['127.0.0.1:' + udpPort]);
        resolver.resolve4('query-from-the-thread.example', () => resolve('ok'));
      }));
      await attempt('dns_server_native', () => new Promise((resolve) => {
        const resolver = new dns.Resolver({ timeout: 200, tries: 1 });
        resolver._handle.setServers([[4, '127.0.0.1', udpPort]]);
        resolver.resolve4('native-query-from-the-thread.example', () => resolve('ok'));
      }));
      await attempt('dns_public_server', () => { new dns.Resolver().setServers(['1.1.1.1', '[2606:4700:4700::1111]:53']); return 'ok'; });
      // A setter on Array.prototype would leave a hole in a checked copy that the native side reads through the
      // prototype (this thread has no lockdown).
      await attempt('dns_prototype_hole', () => {
        const resolver = new dns.Resolver({ timeout: 200, tries: 1 });
        Object.defineProperty(Array.prototype, '0', { configurable: true, set() {}, get() { return [4, '127.0.0.1', udpPort]; } });
        try {
          resolver._handle.setServers([[4, '8.8.8.8', 53]]);
        } finally {
          delete Array.prototype[0];
        }
        return resolver.getServers().join(',');
      });
      // Everything the check could lean on, replaced (an attacker's-eye review turned an earlier check off by
      // patching the shared ipaddr package): the check must not notice.
      await attempt('tampered', () => {
        const ipaddr = require('ipaddr.js');
        ipaddr.IPv4.prototype.range = ipaddr.IPv6.prototype.range = () => 'unicast';
        ipaddr.isValid = () => true;
        ipaddr.process = () => ipaddr.parse('8.8.8.8');
        net.isIP = () => 4;
        Reflect.apply = () => 0;
        // This thread has no lockdown: JavaScript's built-ins are fair game too.
        Array.prototype.some = () => true;
        Array.isArray = () => true;
        globalThis.Uint8Array = class extends Uint16Array {};
        return connect({ port: tcpPort, host: '127.0.0.1' });
      });
      // A public address (TEST-NET would be refused as reserved): the wall lets the attempt through, whatever the
      // network then says; only the wall's own count tells.
      const before = refusals;
      await attempt('public', () => new Promise((resolve) => {
        const s = net.connect({ port: 9, host: '1.1.1.1' });
        s.on('error', () => resolve('tried'));
        setTimeout(() => { s.destroy(); resolve('tried'); }, 200);
      }));
      results.public_refused = String(refusals > before);
      parentPort.postMessage({ results, refusals });
    })();
  `;
  return new Promise((resolve, reject) => {
    const thread = new Worker(code, { eval: true, workerData: { policy, ...targets } });
    thread.once('message', (m: Outcome) => {
      resolve(m);
      void thread.terminate();
    });
    thread.once('error', reject);
  });
}

let tcp: net.Server;
let unix: net.Server;
let udp: dgram.Socket;
let targets: Targets;
const udpReceived: string[] = [];
const open = new Set<net.Socket>();

beforeAll(async () => {
  // Dual-stack where the host has IPv6 (loopback ::1 and IPv4-mapped addresses reach it too).
  const listen = (server: net.Server, opts: net.ListenOptions) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts, () => resolve());
  });
  const respond = (s: net.Socket) => {
    // Clients close as soon as they connected: a reset here is theirs.
    open.add(s.on('close', () => open.delete(s)).on('error', () => undefined));
    s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  };
  tcp = net.createServer(respond);
  let v6 = true;
  await listen(tcp, { port: 0, host: '::', ipv6Only: false }).catch(async () => {
    v6 = false;
    tcp = net.createServer(respond);
    await listen(tcp, { port: 0, host: '127.0.0.1' });
  });
  const unixPath = `\0atoll-egress-test-${process.pid}`;
  unix = net.createServer((s) => s.on('error', () => undefined).end());
  await listen(unix, { path: unixPath });
  udp = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false });
  udp.on('message', (m) => udpReceived.push(String(m)));
  await new Promise<void>((resolve) => udp.bind(0, v6 ? '::' : '127.0.0.1', resolve));
  targets = { tcpPort: (tcp.address() as net.AddressInfo).port, v6, unixPath, udpPort: udp.address().port };
});
afterAll(async () => {
  for (const s of open) s.destroy();
  await Promise.all([new Promise((r) => tcp.close(r)), new Promise((r) => unix.close(r))]);
  udp.close();
});

const LOCAL = ['tcp_loopback', 'tcp_name', 'http_get', 'fetch', 'tcp_v6_loopback', 'tcp_v4_mapped', 'zone_truncated', 'unix_socket', 'udp_send', 'udp_connect', 'udp6_send', 'dns_server', 'dns_server_native', 'tampered'];
/** The names the c-ares queries carry: only the unwalled thread's may arrive. */
const DNS_NAMES = /query-from-the-thread/;

test('without the wall every local way in works (so each refusal below is the wall\'s)', async () => {
  const { results } = await attemptsIn(null, targets);
  for (const name of LOCAL.filter((n) => n in results)) expect([name, results[name]]).toEqual([name, 'ok']);
  expect(udpReceived).toEqual(expect.arrayContaining(['hello', 'connected']));
  expect(udpReceived.filter((m) => DNS_NAMES.test(m))).toHaveLength(2);
  expect(results.dns_public_server).toBe('ok');
  expect(results.unix_public_name).toBe('ENOENT');
});

test('AGENT_EGRESS=public: loopback, IPv6, IPv4-mapped, unix sockets and UDP refused with EACCES, a public address let through', async () => {
  const before = udpReceived.length;
  const { results, refusals } = await attemptsIn({ mode: 'public', allow: [] }, targets);
  const tried = LOCAL.filter((n) => n in results && !['udp6_send', 'dns_server', 'dns_server_native'].includes(n));
  expect(tried.length).toBeGreaterThanOrEqual(9);
  for (const name of tried) expect([name, results[name]]).toEqual([name, 'EACCES']);
  // A DNS server list with a loopback server is refused outright; nothing reached the UDP port.
  expect([results.dns_server, results.dns_server_native, results.dns_public_server]).toEqual(['ERR_ACCESS_DENIED', 'ERR_ACCESS_DENIED', 'ok']);
  expect(results.dns_prototype_hole).toBe('8.8.8.8');
  expect(results.unix_public_name).toBe('EACCES');
  await new Promise((r) => setTimeout(r, 300));
  expect(udpReceived.slice(before)).toEqual([]);
  if (targets.v6) expect(results.udp6_send).toBe('EACCES');
  expect(results.public_refused).toBe('false');
  expect(refusals).toBeGreaterThanOrEqual(tried.length);
});

test('AGENT_EGRESS_ALLOW lets its subnet through and nothing else; none refuses public addresses too', async () => {
  const allowed = await attemptsIn({ mode: 'public', allow: ['127.0.0.0/8'] }, targets);
  for (const name of ['tcp_loopback', 'http_get', 'fetch', 'udp_send', 'udp_connect']) expect([name, allowed.results[name]]).toEqual([name, 'ok']);
  // Mapped IPv4 is judged as the IPv4 address it carries; ::1 is not in 127.0.0.0/8.
  if (targets.v6) expect([allowed.results.tcp_v4_mapped, allowed.results.tcp_v6_loopback]).toEqual(['ok', 'EACCES']);
  expect(allowed.results.unix_socket).toBe('EACCES');
  const none = await attemptsIn({ mode: 'none', allow: [] }, targets);
  expect([none.results.tcp_loopback, none.results.public_refused]).toEqual(['EACCES', 'true']);
  // One address allowed: a zoned form of it that the kernel reads as another address is not.
  if (targets.v6) expect((await attemptsIn({ mode: 'none', allow: ['127.0.0.10/32'] }, targets)).results.zone_truncated).toBe('EACCES');
});

test('the address rules: only public unicast under public, the allow list by subnet, anything unparsable refused', () => {
  const pub = egressAllows({ mode: 'public', allow: [] }, []);
  for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect([a, pub(a)]).toEqual([a, true]);
  const refused = [
    '127.0.0.1', '127.1.2.3', '0.0.0.0', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '224.0.0.1', '255.255.255.255', '192.0.2.1', '::1', '::', 'fe80::1', 'fd00::1', 'fc00::1', '::ffff:127.0.0.1',
    '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe', '2002:a9fe:a9fe::1', 'ff02::1', '0x7f.1', '10.1', '', 'localhost', '/var/run/docker.sock', undefined, 42,
  ];
  for (const a of refused) expect([a, pub(a)]).toEqual([a, false]);
  // IPv4-compatible forms of loopback, and the host's own addresses even when public.
  for (const a of ['::127.0.0.1', '::7f00:1', '0:0:0:0:0:ffff:7f00:1', '::ffff:0:127.0.0.1', 'fe80::1%lo', '2606:4700::1111%eth0']) expect([a, pub(a)]).toEqual([a, false]);
  const onHost = egressAllows({ mode: 'public', allow: [] }, ['203.0.114.7', '2a01:4f8::7']);
  expect(['203.0.114.7', '::ffff:203.0.114.7', '2a01:4f8::7', '203.0.114.8'].map(onHost)).toEqual([false, false, false, true]);
  const allowList = egressAllows({ mode: 'public', allow: ['10.0.5.0/24', 'fd00:1::/64'] });
  expect(['10.0.5.7', '10.0.6.1', 'fd00:1::9', 'fd00:2::9', '8.8.8.8'].map(allowList)).toEqual([true, false, true, false, true]);
  const none = egressAllows({ mode: 'none', allow: ['10.0.5.0/24'] });
  expect(['10.0.5.7', '8.8.8.8', '127.0.0.1'].map(none)).toEqual([true, false, false]);
  expect(['127.0.0.1', '/any/path'].map(egressAllows({ mode: 'any', allow: [] }))).toEqual([true, true]);
});

test('addresses are read into the same bytes as the ipaddr package reads them, in every textual form', () => {
  const forms: string[] = ['0.0.0.0', '255.255.255.255', '8.8.8.8', '::', '::1', '1::', '1::2', '::ffff:1.2.3.4', '64:ff9b::1.2.3.4', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', 'ABCD:ef01::FfFf'];
  // Random addresses, each written with the longest zero run compressed and in full.
  let seed = 7;
  const next = () => (seed = (seed * 48271) % 2147483647);
  for (let n = 0; n < 300; n++) {
    const parts = Array.from({ length: 8 }, () => (next() % 3 === 0 ? 0 : next() % 65536));
    const ip = new ipaddr.IPv6(parts);
    forms.push(ip.toString(), ip.toNormalizedString());
    forms.push(new ipaddr.IPv4(Array.from({ length: 4 }, () => next() % 256)).toString());
  }
  for (const form of forms) {
    const expected = ipaddr.parse(form.split('%')[0]!);
    const bytes = expected.kind() === 'ipv4' ? (expected as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : expected.toByteArray();
    expect([form, Array.from(addressBytes(form) ?? [])]).toEqual([form, bytes]);
  }
  // Zones are refused (libuv reads 39 characters before one); so is anything inet_pton would not read the same way.
  const bad = ['1.2.3', '01.2.3.4', '1.2.3.256', '1:2:3:4:5:6:7:8:9', '1::2::3', 'g::1', '', 'localhost', 'fe80::1%eth0', '::1%lo', '0000:0000:0000:0000:0000:ffff:127.0.0.10%lo', '00001::', ':1::', '1.2.3.4 '];
  for (const form of bad) expect([form, addressBytes(form)]).toEqual([form, null]);
});
