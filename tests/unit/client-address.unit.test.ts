/**
 * The client's address under each kind of TRUST_PROXY value, as express reads `trust proxy`: the rightmost
 * address of X-Forwarded-For that is not itself a trusted proxy; the peer's when nothing is trusted. And what the
 * per-address limits count it as: an IPv6 address by its prefix (IPV6_BUDGET_PREFIX), an IPv4 one whole.
 */
import { budgetAddress, clientAddress, trustFunction } from '../../server/http/client-address';

const request = (peer: string, forwardedFor?: string) => ({ headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }, socket: { remoteAddress: peer } });
const chain = request('127.0.0.1', '203.0.113.9, 10.0.0.5, 198.51.100.7');

test('each TRUST_PROXY value picks its address from the same chain', () => {
  expect(clientAddress(chain, trustFunction(false))).toBe('127.0.0.1');
  expect(clientAddress(chain, trustFunction(true))).toBe('203.0.113.9');
  expect(clientAddress(chain, trustFunction(1))).toBe('198.51.100.7');
  expect(clientAddress(chain, trustFunction(2))).toBe('10.0.0.5');
  expect(clientAddress(chain, trustFunction(['loopback']))).toBe('198.51.100.7');
  expect(clientAddress(chain, trustFunction(['loopback', '198.51.100.0/24', '10.0.0.0/8']))).toBe('203.0.113.9');
  // A peer that is not a trusted proxy is the client, whatever it says.
  expect(clientAddress(request('192.0.2.1', '203.0.113.9'), trustFunction(['loopback']))).toBe('192.0.2.1');
  expect(clientAddress(request('127.0.0.1'), trustFunction(true))).toBe('127.0.0.1');
});

test('an IPv6 client counts by its prefix, however it writes its address; an IPv4 client by its whole address, however it comes', () => {
  // A host picking new addresses in its /64 stays one client.
  const rotated = ['2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002::9', '2001:DB8:1:2::1'];
  expect(rotated.map((a) => budgetAddress(a, 64))).toEqual(Array(4).fill('2001:db8:1:2::/64'));
  expect(budgetAddress('2001:db8:1:3::1', 64)).toBe('2001:db8:1:3::/64'); // the next /64 is another client
  expect(['2001:db8:1:2::1', '2001:db8:1:3::1'].map((a) => budgetAddress(a, 56))).toEqual(['2001:db8:1::/56', '2001:db8:1::/56']);
  expect(budgetAddress('2001:db8::7', 128)).toBe('2001:db8::7/128');
  expect(budgetAddress('fe80::1%eth0', 64)).toBe('fe80::/64');
  // IPv4, also written IPv4-mapped (a dual-stack listener's peers), is one address per client.
  expect(['198.51.100.7', '::ffff:198.51.100.7', '::ffff:c633:6407'].map((a) => budgetAddress(a, 64))).toEqual(Array(3).fill('198.51.100.7'));
  expect(budgetAddress('198.51.100.8', 64)).toBe('198.51.100.8');
  // IPv4 clients through a NAT64 or SIIT translator, or Teredo, each their own: as one /64 they would be every IPv4
  // client of the translator on one budget (helper-83).
  expect(['64:ff9b::198.51.100.7', '64:ff9b::203.0.113.9', '::ffff:0:198.51.100.7'].map((a) => budgetAddress(a, 64))).toEqual(['198.51.100.7', '203.0.113.9', '198.51.100.7']);
  expect(budgetAddress('2001:0:4136:e378:8000:63bf:3fff:fdd2', 64)).toBe('192.0.2.45'); // RFC 4380's example client
  expect(budgetAddress('2002:c633:6407::1', 64)).toBe('198.51.100.7'); // 6to4: one IPv4 host, not 65,536 /64s
  // RFC 8215's local-use prefix: a translator may put the IPv4 address elsewhere, so the prefix rule (helper-84).
  expect(['64:ff9b:1:c633:64:700::', '64:ff9b:1:cb00:71:100::'].map((a) => budgetAddress(a, 64))).toEqual(['64:ff9b:1:c633::/64', '64:ff9b:1:cb00::/64']);
  expect(['::1', '::'].map((a) => budgetAddress(a, 64))).toEqual(['::1', '::']);
  expect(budgetAddress('unknown', 64)).toBe('unknown');
});
