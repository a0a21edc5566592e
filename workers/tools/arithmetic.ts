/**
 * A safe arithmetic evaluator for the calculator tool: a small recursive-descent parser over numbers,
 * + - * / % ^ (or **), parentheses, a fixed table of Math functions and constants. It never reaches
 * eval, Function or any property lookup on user text, so "constructor" or "process.exit()" are just
 * unknown names.
 *
 * Grammar (^ binds tighter than unary minus and is right-associative, so -2^2 = -4 and 2^3^2 = 512):
 *   expr   := term (('+' | '-') term)*
 *   term   := unary (('*' | '/' | '%') unary)*
 *   unary  := ('+' | '-') unary | power
 *   power  := atom (('^' | '**') unary)?
 *   atom   := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
 */

export class ArithmeticError extends Error {}

const MAX_LENGTH = 1000;
const MAX_DEPTH = 64;

const CONSTANTS = new Map<string, number>([
  ['pi', Math.PI],
  ['e', Math.E],
  ['tau', 2 * Math.PI],
]);

type Fn = { arity: [min: number, max: number]; apply: (...args: number[]) => number };
const FUNCTIONS = new Map<string, Fn>([
  ['sqrt', { arity: [1, 1], apply: Math.sqrt }],
  ['cbrt', { arity: [1, 1], apply: Math.cbrt }],
  ['abs', { arity: [1, 1], apply: Math.abs }],
  ['round', { arity: [1, 1], apply: Math.round }],
  ['floor', { arity: [1, 1], apply: Math.floor }],
  ['ceil', { arity: [1, 1], apply: Math.ceil }],
  ['trunc', { arity: [1, 1], apply: Math.trunc }],
  ['sign', { arity: [1, 1], apply: Math.sign }],
  ['exp', { arity: [1, 1], apply: Math.exp }],
  ['ln', { arity: [1, 1], apply: Math.log }],
  ['log', { arity: [1, 2], apply: (x, base) => (base === undefined ? Math.log10(x) : Math.log(x) / Math.log(base)) }],
  ['log2', { arity: [1, 1], apply: Math.log2 }],
  ['log10', { arity: [1, 1], apply: Math.log10 }],
  ['sin', { arity: [1, 1], apply: Math.sin }],
  ['cos', { arity: [1, 1], apply: Math.cos }],
  ['tan', { arity: [1, 1], apply: Math.tan }],
  ['asin', { arity: [1, 1], apply: Math.asin }],
  ['acos', { arity: [1, 1], apply: Math.acos }],
  ['atan', { arity: [1, 1], apply: Math.atan }],
  ['atan2', { arity: [2, 2], apply: Math.atan2 }],
  ['min', { arity: [1, 100], apply: Math.min }],
  ['max', { arity: [1, 100], apply: Math.max }],
  ['pow', { arity: [2, 2], apply: Math.pow }],
  ['hypot', { arity: [1, 100], apply: Math.hypot }],
]);

export const KNOWN_NAMES = [...CONSTANTS.keys(), ...FUNCTIONS.keys()];

type Token = { kind: 'num'; value: number; at: number } | { kind: 'name'; value: string; at: number } | { kind: 'op'; value: string; at: number };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  const number = /\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?/y;
  const name = /[A-Za-z_][A-Za-z0-9_]*/y;
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    number.lastIndex = i;
    name.lastIndex = i;
    let m: RegExpExecArray | null;
    if ((m = number.exec(src))) {
      tokens.push({ kind: 'num', value: Number(m[0]), at: i });
      i += m[0].length;
    } else if ((m = name.exec(src))) {
      tokens.push({ kind: 'name', value: m[0].toLowerCase(), at: i });
      i += m[0].length;
    } else if (src.startsWith('**', i)) {
      tokens.push({ kind: 'op', value: '^', at: i });
      i += 2;
    } else if ('+-*/%^(),'.includes(c)) {
      tokens.push({ kind: 'op', value: c, at: i });
      i++;
    } else if (c === '×' || c === '÷') {
      tokens.push({ kind: 'op', value: c === '×' ? '*' : '/', at: i });
      i++;
    } else {
      throw new ArithmeticError(`unexpected character ${JSON.stringify(c)} at position ${i + 1}`);
    }
  }
  return tokens;
}

export function evaluateArithmetic(expression: string): number {
  if (typeof expression !== 'string' || !expression.trim()) throw new ArithmeticError('the expression is empty');
  if (expression.length > MAX_LENGTH) throw new ArithmeticError(`the expression is longer than ${MAX_LENGTH} characters`);
  const tokens = tokenize(expression);
  let pos = 0;
  let depth = 0;

  const peek = () => tokens[pos];
  const isOp = (value: string) => peek()?.kind === 'op' && peek()!.value === value;
  const expect = (value: string) => {
    if (!isOp(value)) throw new ArithmeticError(`expected "${value}" ${where()}`);
    pos++;
  };
  const where = () => (peek() ? `at position ${peek()!.at + 1}` : 'at the end');
  const nested = <T>(parse: () => T): T => {
    if (++depth > MAX_DEPTH) throw new ArithmeticError(`the expression nests deeper than ${MAX_DEPTH} levels`);
    try {
      return parse();
    } finally {
      depth--;
    }
  };

  const expr = (): number =>
    nested(() => {
      let value = term();
      while (isOp('+') || isOp('-')) value = tokens[pos++].value === '+' ? value + term() : value - term();
      return value;
    });
  const term = (): number => {
    let value = unary();
    while (isOp('*') || isOp('/') || isOp('%')) {
      const op = tokens[pos++].value;
      const right = unary();
      value = op === '*' ? value * right : op === '/' ? value / right : value % right;
    }
    return value;
  };
  const unary = (): number =>
    nested(() => {
      if (isOp('-')) return pos++, -unary();
      if (isOp('+')) return pos++, +unary();
      return power();
    });
  const power = (): number => {
    const base = atom();
    if (!isOp('^')) return base;
    pos++;
    return Math.pow(base, unary());
  };
  const atom = (): number => {
    const t = peek();
    if (!t) throw new ArithmeticError('the expression ends too early');
    if (t.kind === 'num') return pos++, t.value;
    if (t.kind === 'op' && t.value === '(') {
      pos++;
      const value = expr();
      expect(')');
      return value;
    }
    if (t.kind === 'name') {
      pos++;
      const fn = FUNCTIONS.get(t.value);
      if (fn) {
        expect('(');
        const args = [expr()];
        while (isOp(',')) {
          pos++;
          args.push(expr());
        }
        expect(')');
        const [min, max] = fn.arity;
        if (args.length < min || args.length > max) {
          throw new ArithmeticError(`${t.value}() takes ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${args.length}`);
        }
        return fn.apply(...args);
      }
      const constant = CONSTANTS.get(t.value);
      if (constant !== undefined) return constant;
      throw new ArithmeticError(`unknown name "${t.value}"; known: ${KNOWN_NAMES.join(', ')}`);
    }
    throw new ArithmeticError(`unexpected "${t.value}" ${where()}`);
  };

  const value = expr();
  if (pos < tokens.length) throw new ArithmeticError(`unexpected "${tokens[pos].value}" at position ${tokens[pos].at + 1}`);
  if (!Number.isFinite(value)) throw new ArithmeticError(`the result is not a finite number (${value}); check for a division by zero or an overflow`);
  // Floating-point noise (0.1 + 0.2) helps nobody reading the answer.
  return Number.parseFloat(value.toPrecision(15));
}
