import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../store/db.js';
import { writeTransaction } from '../store/db.js';
import { ErrorCode, VnumError } from '../errors.js';

/**
 * API keys for the HTTP API (created, listed and revoked by `vnum apikey`).
 *
 * A key reads `vnum_<id>_<secret>`: the id (16 hex digits) is its public
 * name in lists and logs, the secret 32 random bytes (base64url). Only the
 * SHA-256 of the secret is stored: a key is shown once, when it is made, and
 * a copy of the database does not hand out working keys. The secret has 256
 * bits of entropy, so a plain hash is enough (no password stretching).
 */

/**
 * What a key may do:
 *   read      every GET: sessions, pool, route, calls, stats, health
 *   sessions  read, and create and release sessions (the order system)
 *   pool      read, and add, reserve, retire and import pool numbers
 *   admin     everything
 */
export const SCOPES = ['read', 'sessions', 'pool', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKey {
  id: string;
  name: string;
  scopes: Scope[];
  createdAt: number;
  revokedAt: number | null;
  /** When a request last used it, to the minute (see verifyApiKey). */
  lastUsedAt: number | null;
}

export type KeyCheck =
  | { ok: true; key: ApiKey }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' };

const TOKEN = /^vnum_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** lastUsedAt is written at most this often per key: a write per request would contend with creates. */
export const LAST_USED_RESOLUTION_MS = 60_000;

/** Does a key with these scopes cover a request that needs `needed`? Every scope reads. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  return needed === 'read' || scopes.includes('admin') || scopes.includes(needed);
}

/** `--scope sessions,pool`: known names, at least one, duplicates ignored, in SCOPES order. */
export function parseScopes(text: string): Scope[] {
  const names = text.split(',').map((name) => name.trim().toLowerCase()).filter((name) => name !== '');
  if (names.length === 0) throw new VnumError(ErrorCode.InvalidArgument, `no scope given: name at least one of ${SCOPES.join(', ')}`);
  for (const name of names) {
    if (!(SCOPES as readonly string[]).includes(name)) {
      throw new VnumError(ErrorCode.InvalidArgument, `unknown scope "${name.slice(0, 40)}": use ${SCOPES.join(', ')} (comma-separated)`);
    }
  }
  return SCOPES.filter((scope) => names.includes(scope));
}

export function validateKeyName(name: string): string {
  if (!KEY_NAME.test(name)) {
    throw new VnumError(
      ErrorCode.InvalidArgument,
      `invalid key name "${name.slice(0, 70)}": 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit`,
    );
  }
  return name;
}

/** A key's row, as both stores keep it. */
export interface KeyRow {
  id: string;
  name: string;
  scopes: string;
  secret_sha256: Buffer;
  created_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
}

export function toKey(row: KeyRow): ApiKey {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes.split(',') as Scope[],
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
  };
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/**
 * A new key, judged and made but not stored: the row to store (only the
 * secret's hash) and `token`, the only copy of its secret.
 */
export function newApiKey(input: { name: string; scopes: Scope[]; now: number }): { row: KeyRow; key: ApiKey; token: string } {
  validateKeyName(input.name);
  if (input.scopes.length === 0) throw new VnumError(ErrorCode.InvalidArgument, `no scope given: name at least one of ${SCOPES.join(', ')}`);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const row: KeyRow = { id, name: input.name, scopes: input.scopes.join(','), secret_sha256: sha256(secret), created_at: input.now, revoked_at: null, last_used_at: null };
  return { row, key: toKey(row), token: `vnum_${id}_${secret}` };
}

export function keyNameTaken(name: string): VnumError {
  return new VnumError(ErrorCode.InvalidArgument, `an API key named "${name}" exists: revoke it first, or choose another name`);
}

export function noSuchKey(idOrName: string): VnumError {
  return new VnumError(ErrorCode.ApiKeyNotFound, `no API key "${idOrName.slice(0, 70)}" (give its id or the name of a key not revoked; see vnum apikey list)`);
}

/** A new key; `token` is the only copy of its secret. A name is unique among keys not revoked. */
export function createApiKey(db: Db, input: { name: string; scopes: Scope[]; now: number }): { key: ApiKey; token: string } {
  const { row, key, token } = newApiKey(input);
  return writeTransaction(db, () => {
    if (db.prepare('SELECT 1 FROM api_key WHERE name = ? AND revoked_at IS NULL').get(input.name)) throw keyNameTaken(input.name);
    db.prepare('INSERT INTO api_key (id, name, scopes, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?)').run(
      row.id, row.name, row.scopes, row.secret_sha256, row.created_at,
    );
    return { key, token };
  });
}

/** Every key, revoked ones too, oldest first. */
export function listApiKeys(db: Db): ApiKey[] {
  return db.prepare<[], KeyRow>('SELECT * FROM api_key ORDER BY created_at, id').all().map(toKey);
}

/** Revoke by id, or by the name of a key not revoked. Revoking a revoked key changes nothing. */
export function revokeApiKey(db: Db, idOrName: string, now: number): { key: ApiKey; changed: boolean } {
  return writeTransaction(db, () => {
    const row =
      db.prepare<[string], KeyRow>('SELECT * FROM api_key WHERE id = ?').get(idOrName) ??
      db.prepare<[string], KeyRow>('SELECT * FROM api_key WHERE name = ? AND revoked_at IS NULL').get(idOrName);
    if (!row) throw noSuchKey(idOrName);
    if (row.revoked_at !== null) return { key: toKey(row), changed: false };
    db.prepare('UPDATE api_key SET revoked_at = ? WHERE id = ?').run(now, row.id);
    return { key: toKey({ ...row, revoked_at: now }), changed: true };
  });
}

function prepareVerify(db: Db) {
  return {
    byId: db.prepare<[string], KeyRow>('SELECT * FROM api_key WHERE id = ?'),
    used: db.prepare<[number, string]>('UPDATE api_key SET last_used_at = ? WHERE id = ?'),
  };
}
const statements = new WeakMap<Db, ReturnType<typeof prepareVerify>>();

/**
 * The key a request presents, checked: one point read and a constant-time
 * comparison of hashes. Revocation takes effect on the next request. A key
 * that passes has its lastUsedAt moved when it is older than a minute.
 */
export function verifyApiKey(db: Db, token: string, now: number): KeyCheck {
  const parsed = parseToken(token);
  if (!parsed) return { ok: false, reason: 'malformed' };
  let s = statements.get(db);
  if (!s) {
    s = prepareVerify(db);
    statements.set(db, s);
  }
  const row = s.byId.get(parsed.id);
  const check = checkKey(row, parsed.secret);
  if (check.ok && lastUseDue(row!, now)) {
    s.used.run(now, row!.id);
    row!.last_used_at = now;
    return { ok: true, key: toKey(row!) };
  }
  return check;
}

/** A token's id and secret, or undefined when it is not shaped as a key. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const match = TOKEN.exec(token);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

/** The key a token's secret opens, judged against its row (a constant-time comparison of hashes). */
export function checkKey(row: KeyRow | undefined, secret: string): KeyCheck {
  if (!row || !timingSafeEqual(row.secret_sha256, sha256(secret))) return { ok: false, reason: 'unknown' };
  if (row.revoked_at !== null) return { ok: false, reason: 'revoked' };
  return { ok: true, key: toKey(row) };
}

/** Whether a use at `now` moves the key's lastUsedAt (at most once a minute). */
export function lastUseDue(row: KeyRow, now: number): boolean {
  return row.last_used_at === null || now - row.last_used_at >= LAST_USED_RESOLUTION_MS;
}
