import { ErrorCode, VnumError } from '../errors.js';

/**
 * PostgreSQL column values, as the server writes them in text form, turned
 * into what SQLite stores: the one conversion used by the snapshot copy, the
 * stream and the audit, so the three can never disagree. Values never pass
 * through pg's process-wide type parsers (another module may have changed
 * them); int8 stays exact (a JS number when it fits 2^53, else a bigint).
 *
 * Only the types the replicated schema may use are accepted; anything else
 * (timestamps, arrays, ...) is refused when the column is first seen, naming
 * it, rather than stored in a form the router would misread. The schema's
 * convention: times are bigint ms since the epoch, text is text.
 */
export type SqlValue = string | number | bigint | Buffer | null;

type Convert = (text: string) => SqlValue;

const integer: Convert = (text) => {
  const n = BigInt(text);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
};
const real: Convert = (text) => Number(text);
const asText: Convert = (text) => text;
const bool: Convert = (text) => (text === 't' ? 1 : 0);
const bytea: Convert = (text) => {
  if (!text.startsWith('\\x')) throw new Error('bytea not in hex format');
  return Buffer.from(text.slice(2), 'hex');
};

/** By type OID (pg_type.oid of the built-in types), with the name used in messages. */
const CONVERTERS: ReadonlyMap<number, { name: string; convert: Convert }> = new Map([
  [16, { name: 'boolean', convert: bool }],
  [17, { name: 'bytea', convert: bytea }],
  [19, { name: 'name', convert: asText }],
  [20, { name: 'bigint', convert: integer }],
  [21, { name: 'smallint', convert: integer }],
  [23, { name: 'integer', convert: integer }],
  [25, { name: 'text', convert: asText }],
  [26, { name: 'oid', convert: integer }],
  [114, { name: 'json', convert: asText }],
  [700, { name: 'real', convert: real }],
  [701, { name: 'double precision', convert: real }],
  [1042, { name: 'character', convert: asText }],
  [1043, { name: 'character varying', convert: asText }],
  [1700, { name: 'numeric', convert: asText }],
  [2950, { name: 'uuid', convert: asText }],
  [3802, { name: 'jsonb', convert: asText }],
]);

export const SUPPORTED_TYPES: readonly string[] = [...CONVERTERS.values()].map((c) => c.name);

/** The converter for a column of this type; throws, naming the column, for a type the replica cannot hold. */
export function converterFor(typeOid: number, column: string): (text: string | null) => SqlValue {
  const entry = CONVERTERS.get(typeOid);
  if (!entry) {
    throw new VnumError(
      ErrorCode.Database,
      `column ${column} has PostgreSQL type oid ${typeOid}, which the replica cannot hold (it takes ${SUPPORTED_TYPES.join(', ')}; times are bigint ms)`,
    );
  }
  const { convert } = entry;
  return (text) => (text === null ? null : convert(text));
}

/**
 * A value as one comparable string, for the audit: integers compare by value
 * whether SQLite returned a number or a bigint, blobs by their bytes.
 */
export function valueKey(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return `n:${value}`;
  if (typeof value === 'number') return Number.isInteger(value) ? `n:${BigInt(value)}` : `n:${value}`;
  if (typeof value === 'string') return `s:${value}`;
  if (Buffer.isBuffer(value)) return `b:${value.toString('hex')}`;
  return `?:${String(value)}`;
}
