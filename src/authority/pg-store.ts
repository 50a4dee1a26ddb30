import pg from 'pg';
import { ErrorCode, VnumError } from '../errors.js';
import type { PgTarget } from '../replica/stream.js';
import { PG_MIGRATIONS } from '../store/pg/migrations.js';

/**
 * The authority's connections (cluster mode): a pg.Pool, transactions that
 * are retried when PostgreSQL says a retry will do, and PostgreSQL's failures
 * as the error family's codes. Nothing here knows a table but vnum_schema.
 */

/** Attempts of one transaction that PostgreSQL aborted for concurrency (serialization, deadlock, a unique key taken, a pair taken). */
export const MAX_ATTEMPTS = 10;

/** int8 as a JS number (times in ms and ids fit 2^53), on this pool only: pg's process-wide parsers are left alone. */
const TYPES = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (text: string) => Number(text) : pg.types.getTypeParser(oid, format as 'text'),
} as unknown as pg.CustomTypesConfig;

export interface PgStoreOptions {
  /** Connections at most (per API process). */
  connections?: number;
  applicationName?: string;
  /** Connect, lock wait and statement bounds, ms. */
  timeoutMs?: number;
}

/** `user@host:port/database`: how messages name the authority (never a password). */
export function targetName(target: PgTarget): string {
  return `${target.user}@${target.host}:${target.port}/${target.database}`;
}

/**
 * Thrown inside a transaction's work to roll it back and run it again from
 * the top (its reads are stale: another transaction committed what this one
 * was about to take).
 */
export class RetryTransaction extends Error {
  constructor(readonly why: string) {
    super(`retry: ${why}`);
  }
}

/** SQLSTATEs after which the same transaction, run again, may succeed. */
const RETRIED = new Set(['40001', '40P01', '23505']);
/** Node's socket errors: the server is not there (or the link is down). */
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

export class PgStore {
  readonly pool: pg.Pool;
  readonly name: string;

  constructor(target: PgTarget, options: PgStoreOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 5_000;
    this.name = targetName(target);
    this.pool = new pg.Pool({
      ...target,
      max: options.connections ?? 10,
      application_name: options.applicationName ?? 'vnum api',
      types: TYPES,
      connectionTimeoutMillis: timeoutMs,
      // The server's own bounds, and the client's for a link that went silent. A transaction left
      // open by an API cut off mid-way is ended by the server, so its row and pool locks do not
      // hold other instances up for longer than that.
      statement_timeout: 2 * timeoutMs,
      lock_timeout: timeoutMs,
      idle_in_transaction_session_timeout: 2 * timeoutMs,
      query_timeout: 3 * timeoutMs,
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection the server dropped: the pool discards it; the next checkout connects again.
    this.pool.on('error', () => {});
  }

  /** One statement outside a transaction, its failure as ours. */
  async query<R extends pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text as string, values);
    } catch (error) {
      throw this.error(error);
    }
  }

  /**
   * `work` inside one READ COMMITTED transaction, run again (with a short
   * random pause) when PostgreSQL aborts it for concurrency or `work` asks to
   * (RetryTransaction), MAX_ATTEMPTS in all; then VNUM_DATABASE_BUSY. A
   * connection that failed is discarded, not returned to the pool.
   */
  async transaction<T>(work: (client: pg.PoolClient) => Promise<T>, options: { readOnly?: boolean; begin?: string } = {}): Promise<T> {
    let last: unknown;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw this.error(error);
      }
      let broken: Error | undefined;
      try {
        // `begin`: BEGIN and constant statements after it, in one round trip (the simple protocol takes several).
        await client.query(options.begin ?? (options.readOnly ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN'));
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        if (isConnectionFailure(error)) broken = error as Error;
        else await client.query('ROLLBACK').catch((e: Error) => (broken = e));
        if (!(error instanceof RetryTransaction || RETRIED.has(sqlState(error) ?? '')) || broken) throw this.error(error);
        last = error;
      } finally {
        client.release(broken);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
    }
    throw new VnumError(
      ErrorCode.DatabaseBusy,
      `the authority ${this.name} is busy: ${MAX_ATTEMPTS} attempts met concurrent changes (${describe(last)}); nothing was written, try again`,
    );
  }

  /** PostgreSQL's failures as the error family's codes; ours pass through. */
  error(error: unknown): unknown {
    if (error instanceof VnumError) return error;
    const message = (error as Error)?.message ?? String(error);
    const state = sqlState(error);
    if (isConnectionFailure(error)) {
      return new VnumError(ErrorCode.AuthorityUnavailable, `the authority ${this.name} cannot be reached: ${message}; nothing was acknowledged, try again`);
    }
    if (state === '55P03' || state === '57014' || state === '40001' || state === '40P01') {
      return new VnumError(ErrorCode.DatabaseBusy, `the authority ${this.name} is busy (${message}); nothing was written, try again`);
    }
    if (state === '42P01' || state === '42703') {
      return new VnumError(ErrorCode.DatabaseVersion, `the authority ${this.name} lacks vnum's schema (${message}): run vnum cluster migrate`);
    }
    if (state?.startsWith('28') || state === '3D000' || state === '42501') {
      return new VnumError(ErrorCode.AuthorityUnavailable, `the authority ${this.name} refused: ${message}`);
    }
    return new VnumError(ErrorCode.Database, `the authority ${this.name} failed: ${message}${state ? ` (SQLSTATE ${state})` : ''}`);
  }

  /** The schema must be the one this vnum was built for: `vnum cluster migrate` brings it there. */
  async checkSchema(): Promise<number> {
    let version: number;
    try {
      const { rows } = await this.pool.query<{ version: number }>('SELECT version FROM vnum_schema');
      version = rows[0]?.version ?? 0;
    } catch (error) {
      if (sqlState(error) === '42P01') version = 0;
      else throw this.error(error);
    }
    if (version < PG_MIGRATIONS.length) {
      throw new VnumError(
        ErrorCode.DatabaseVersion,
        `the authority ${this.name} has vnum schema version ${version}, this vnum needs ${PG_MIGRATIONS.length}: run vnum cluster migrate --authority <url>`,
      );
    }
    if (version > PG_MIGRATIONS.length) {
      throw new VnumError(ErrorCode.DatabaseVersion, `the authority ${this.name} has vnum schema version ${version}, newer than this vnum understands (${PG_MIGRATIONS.length}): upgrade vnum`);
    }
    return version;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The server is gone, the link is down, or it is shutting down: nothing this request can fix by itself. */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof VnumError || error instanceof RetryTransaction) return false;
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string' && NETWORK.has(code)) return true;
  const state = sqlState(error);
  // 08: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections.
  if (state !== undefined) return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03' || state === '53300';
  const message = (error as Error)?.message ?? '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|not queryable/i.test(message);
}

function describe(error: unknown): string {
  if (error instanceof RetryTransaction) return error.why;
  return sqlState(error) ?? (error as Error)?.message ?? 'unknown';
}

/** `@name` parameters (as the SQLite side's SQL fragments write them, src/session/state.ts) as PostgreSQL's `$n`. */
export function positional(sql: string, values: Record<string, unknown>): { text: string; values: unknown[] } {
  const names: string[] = [];
  const text = sql.replace(/@([a-z_]+)/gi, (_, name: string) => {
    if (!(name in values)) throw new Error(`no value for @${name}`);
    let index = names.indexOf(name);
    if (index === -1) index = names.push(name) - 1;
    return `$${index + 1}`;
  });
  return { text, values: names.map((n) => values[n]) };
}
