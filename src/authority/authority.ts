import type { ApiKey, KeyCheck, Scope } from '../access/api-keys.js';
import type { HangupRequest } from '../calls/hangup.js';
import type { Call, CallFilter } from '../calls/store.js';
import type { RouterStatus } from '../calls/store.js';
import type { E164 } from '../numbers/normalise.js';
import type { PoolChange, PoolEntryInput, PoolNumber, PoolQuery } from '../pool/pool.js';
import type { SyncOptions, SyncSummary } from '../pool/sync.js';
import type { HandlingChange, NumberHandling } from '../pool/handling.js';
import type { CallKey, RouteDecision, RouteOptions } from '../routing/decide.js';
import type { CreateResult, CreateSessionInput, ReleaseResult, Session, SessionFilter, SessionPage } from '../session/sessions.js';
import type { Stats } from '../stats.js';
import type { ErrorCode } from '../errors.js';

/**
 * The authority: the store of record for the pool, sessions, the call log
 * and API keys, as the faces that change it see it (the HTTP API today, and
 * `vnum apikey`). Asynchronous, so that the same faces run on an embedded
 * SQLite file (./sqlite.ts, wrapping the domain's functions) or on a
 * network database (cluster mode's PostgreSQL) alike; the call path never
 * comes here (`vnum serve` routes from its local file).
 *
 * Every method keeps the domain's rules and error codes (VnumError): an
 * implementation holds the allocation invariant with its own transactions
 * and constraints, and maps its store's failures to the store codes
 * (VNUM_DATABASE_BUSY, VNUM_DATABASE, ...).
 */
export interface Authority {
  // Sessions (src/session/sessions.ts).
  createSession(input: CreateSessionInput): Promise<CreateResult>;
  getSession(id: string, now: number): Promise<Session>;
  listSessions(filter: SessionFilter): Promise<SessionPage>;
  /** Release, and with `hangup` ask `vnum serve` to hang up the session's calls in progress (`hangup`: what was asked, ../calls/hangup.ts; undefined without). */
  releaseSession(id: string, graceMs: number, now: number, options: { hangup: boolean }): Promise<ReleaseResult & { hangup: HangupRequest | undefined }>;

  // The pool (src/pool/pool.ts). `import` applies a provider export's rule (importedState).
  listPool(query: PoolQuery & { limit: number }): Promise<{ numbers: PoolNumber[]; next: string | undefined }>;
  addToPool(entries: PoolEntryInput[], options: { defaultCountry: string | undefined; now: number; rule: 'operator' | 'import' }): Promise<PoolChange>;
  /** `tookOverFromSync`: a number a sync had retired is now the operator's (src/pool/pool.ts, retireNumber). */
  retireNumber(number: E164): Promise<{ changed: boolean; tookOverFromSync: boolean }>;
  /** How a pool number handles callers without a bridge, as `vnum pool set` (src/pool/handling.ts). */
  setNumberHandling(number: E164, change: HandlingChange): Promise<{ handling: NumberHandling; changed: boolean }>;
  /** A provider's export, as `vnum pool sync` (src/pool/sync.ts): all or nothing, VNUM_RETIRE_LIMIT over the limit. */
  syncPool(entries: PoolEntryInput[], options: SyncOptions): Promise<SyncSummary>;

  /** The router's decision for a call, from the same code `vnum serve` runs. */
  decideRoute(call: CallKey, now: number, options: RouteOptions): Promise<RouteDecision>;

  // The call log (src/calls/store.ts).
  listCalls(filter: CallFilter, now: number): Promise<{ calls: Call[]; next: number | undefined; watching: boolean }>;
  /** How many of these calls are still in progress. */
  openCallCount(ids: readonly number[]): Promise<number>;

  collectStats(now: number): Promise<Stats>;
  /** Whether the store answers a read, its schema version, and what each router reported since `routersSince`. */
  checkStore(routersSince: number): Promise<StoreCheck>;

  // API keys (src/access/api-keys.ts).
  createApiKey(input: { name: string; scopes: Scope[]; now: number }): Promise<{ key: ApiKey; token: string }>;
  listApiKeys(): Promise<ApiKey[]>;
  revokeApiKey(idOrName: string, now: number): Promise<{ key: ApiKey; changed: boolean }>;
  verifyApiKey(token: string, now: number): Promise<KeyCheck>;

  close(): Promise<void>;
  /** How many creates were committed in how many transactions (an implementation that groups them says so). */
  commitStats?(): { creates: number; transactions: number };
}

export interface StoreCheck {
  ok: boolean;
  /** Where the store is, as an operator names it (a file path). */
  location: string;
  schemaVersion: number | null;
  error: string | null;
  /** The error code a face reports when the store cannot answer (VNUM_DATABASE when absent). */
  code?: ErrorCode;
  /**
   * Every `vnum serve` that reported to this store (each writes its state every 5 s), by address;
   * in cluster mode every node's, as the nodes ship them (`<node>/<host:port>`); undefined when not read.
   */
  routers: RouterStatus[] | undefined;
}
