/**
 * The client's address under each kind of TRUST_PROXY value, as express reads `trust proxy`: the rightmost
 * address of X-Forwarded-For that is not itself a trusted proxy; the peer's when nothing is trusted.
 */
import { clientAddress, trustFunction } from '../../server/http/client-address';

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
