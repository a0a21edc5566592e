// pg's own conversion of a query value to what goes on the wire (pg/lib/utils.js, exported by pg's package.json);
// @types/pg does not declare it.
declare module 'pg/lib/utils.js' {
  export function prepareValue(value: unknown): string | Buffer | null;
}
