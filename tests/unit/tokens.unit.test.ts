/**
 * The token lifetime cap (server/auth/tokens.ts, AUTH_MAX_TOKEN_LIFETIME_S) against tokens that name their own
 * issue time: a future iat used to make exp - iat small whatever exp was.
 */
import jwt from 'jsonwebtoken';
import { CLOCK_SKEW_S, createTokenService } from '../../server/auth/tokens';

const SECRET = 'unit-secret-unit-secret-unit-secret';
const MAX_S = 3600;
const tokens = createTokenService(SECRET, { maxLifetimeS: MAX_S });
/** Signs exactly these claims: jsonwebtoken adds iat = now unless told not to, and drops a given one if told. */
const sign = (claims: Record<string, unknown>) => jwt.sign({ sub: 'alice', ...claims }, SECRET, { algorithm: 'HS256', noTimestamp: !('iat' in claims) });
const now = () => Math.floor(Date.now() / 1000);
const TEN_YEARS_S = 10 * 365 * 86_400;

describe('token lifetime', () => {
  test.each([
    ['iat in the future, exp ten years away (exp - iat = 60 s)', () => ({ iat: now() + TEN_YEARS_S - 60, exp: now() + TEN_YEARS_S }), /issued in the future/],
    ['iat = exp = 1e300', () => ({ iat: 1e300, exp: 1e300 }), /issued in the future/],
    ['iat now, exp = 1e300', () => ({ iat: now(), exp: 1e300 }), /AUTH_MAX_TOKEN_LIFETIME_S/],
    ['iat in the past, exp beyond the cap from now (exp - iat within it)', () => ({ iat: now() - 10, exp: now() + MAX_S + CLOCK_SKEW_S + 10 }), /AUTH_MAX_TOKEN_LIFETIME_S/],
    ['iat just past the skew ahead', () => ({ iat: now() + CLOCK_SKEW_S + 5, exp: now() + CLOCK_SKEW_S + 65 }), /issued in the future/],
    ['no iat, exp beyond the cap', () => ({ exp: now() + MAX_S + CLOCK_SKEW_S + 10 }), /AUTH_MAX_TOKEN_LIFETIME_S/],
  ])('refused: %s', (_name, claims, why) => {
    expect(() => tokens.session(sign(claims()))).toThrow(why);
  });

  test.each([
    ['iat now, exp at the cap', () => ({ iat: now(), exp: now() + MAX_S })],
    ['iat a little ahead (within the skew), exp at the cap from it', () => ({ iat: now() + CLOCK_SKEW_S - 5, exp: now() + CLOCK_SKEW_S - 5 + MAX_S })],
    ['no iat, exp within the cap', () => ({ exp: now() + MAX_S })],
    ['one the service issues', () => null],
  ])('accepted: %s', (_name, claims) => {
    const c = claims();
    const session = tokens.session(c === null ? tokens.issue('alice') : sign(c));
    expect(session.userId).toBe('alice');
    expect(session.expiresAt).toBeLessThanOrEqual(Date.now() + (MAX_S + CLOCK_SKEW_S) * 1000);
  });
});
