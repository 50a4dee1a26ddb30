import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { PgTarget } from '../../../src/replica/stream.js';
import { decideRoute } from '../../../src/routing/decide.js';
import { storeBridgeLookup } from '../../../src/routing/lookup.js';
import { openDb, type Db } from '../../../src/store/db.js';
import { ApiClient } from '../api.js';
import { vnum } from '../cli.js';
import { repoPath } from '../repo.js';
import { sleep } from '../wait.js';
import { barrier } from './checks.js';
import { atExit } from './cleanup.js';
import type { Host } from './netns.js';
import { startReplicaCommand, type ReplicaCommand } from './node.js';
import type { ClusterEnv } from './suite.js';

/**
 * Cluster mode's write face as an operator runs it: the built `vnum api
 * --authority postgres://...` inside a netns host (stateless: PostgreSQL is
 * its store), API keys made on the authority by the CLI, and a watch on the
 * nodes' replica files that says when a session the API acknowledged became
 * routable there, by the router's own decision code.
 */

/** The authority's URL as a host reaches it (PostgreSQL listens on each host's gateway). */
export function authorityUrl(target: PgTarget, host = target.host): string {
  return `postgres://${target.user}@${host}:${target.port}/${target.database}`;
}

/** The CLI on the authority, with no local database or log settings from the test's environment. */
export function clusterCli(args: string[], authority: string): { code: number | null; stdout: string; stderr: string } {
  return vnum(args, { VNUM_AUTHORITY: authority, VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DEFAULT_COUNTRY: 'GB' });
}

/** `vnum cluster migrate` on a fresh database: the authority's schema, as an operator makes it. */
export function migrateAuthority(authority: string): void {
  const run = clusterCli(['cluster', 'migrate'], authority);
  if (run.code !== 0) throw new Error(`vnum cluster migrate failed (${run.code}): ${run.stderr}`);
}

/** `vnum apikey create --authority ...`: a key kept on the authority, usable by every API instance. */
export function createAuthorityKey(authority: string, name: string, scopes: string[]): string {
  const run = clusterCli(['apikey', 'create', '--name', name, '--scope', scopes.join(','), '--json'], authority);
  if (run.code !== 0) throw new Error(`vnum apikey create on the authority failed (${run.code}): ${run.stderr}`);
  return (JSON.parse(run.stdout) as { key: string }).key;
}

export interface AuthorityApi {
  /** http://<host address>:<port>, reached from this machine over the host's link. */
  url: string;
  child: ChildProcess;
  pid: number;
  /** Its log (stderr) so far. */
  log(): string;
  alive(): boolean;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL: no drain, no goodbye. */
  kill(): Promise<void>;
  /** SIGTERM (drain), SIGKILL after 10 s. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export const API_PORT = 8474;

/**
 * `vnum api --authority <url>` inside `host`, listening on the host's own
 * address; resolves once GET /v1/ready answers 200 from this machine.
 */
export async function startAuthorityApi(host: Host, authority: string, options: { env?: Record<string, string | undefined>; args?: string[] } = {}): Promise<AuthorityApi> {
  const merged: Record<string, string | undefined> = {
    ...process.env,
    VNUM_DB: undefined,
    VNUM_API_HOST: undefined,
    VNUM_API_PORT: undefined,
    VNUM_LOG_REDACT: undefined,
    VNUM_DEFAULT_COUNTRY: 'GB',
    VNUM_LOG_LEVEL: 'info',
    ...options.env,
  };
  const args = [
    repoPath('dist/src/cli/main.js'), 'api', '--authority', authority,
    '--host', host.address, '--port', String(API_PORT), '--rate-limit', '0', ...(options.args ?? []),
  ];
  const child = host.spawn(process.execPath, args, {
    env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const forget = atExit(() => {
    if (alive()) child.kill('SIGKILL');
  });
  void exited.then(forget);
  const url = `http://${host.address}:${API_PORT}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (!alive()) throw new Error(`vnum api --authority exited (${child.exitCode ?? child.signalCode}) before it was ready: ${err.slice(-3000)}`);
    const ready = await fetch(`${url}/v1/ready`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.status, () => 0);
    if (ready === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vnum api --authority not ready within 20 s (last answer ${ready}): ${err.slice(-3000)}`);
    }
    await sleep(100);
  }
  return {
    url,
    child,
    pid: child.pid!,
    log: () => err,
    alive,
    exited,
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (alive()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

/** A session as the API answers a create. */
export interface CreatedJson {
  id: string;
  state: string;
  parties: Array<{ number: string; maskedAs: string }>;
}

/** The two calls a session makes routable: each party dials the other's masked number. */
export function callsOf(session: CreatedJson): Array<{ caller: string; dialled: string; target: string; presented: string }> {
  const [a, b] = session.parties as [CreatedJson['parties'][0], CreatedJson['parties'][0]];
  return [
    { caller: a.number, dialled: b.maskedAs, target: b.number, presented: a.maskedAs },
    { caller: b.number, dialled: a.maskedAs, target: a.number, presented: b.maskedAs },
  ];
}

/** Whether the router's own decision code, reading `db` now, bridges both calls of the session to the right party. */
export function routableOn(db: Db, session: CreatedJson, lookup = storeBridgeLookup(db)): boolean {
  const now = Date.now();
  return callsOf(session).every((call) => {
    const decision = decideRoute(call, now, lookup, { defaultCountry: 'GB' });
    return decision.status === 'BRIDGE' && decision.session === session.id && decision.target === call.target && decision.presentedCallerId === call.presented;
  });
}

/** When a watched session became routable on each file, in file order. */
export interface Seen {
  /** performance.now() of the first look that found it routable. */
  at: number[];
  /** Already routable at the first look, made when it was handed over (right after the API's 201). */
  atFirstLook: boolean[];
}

/**
 * Watches replica files (each opened read-only, as `vnum serve` reads its
 * own) every `everyMs` for the sessions handed to it: `track` looks at once,
 * then on every tick, and resolves when every file routes the session. The
 * resolution is the poll interval.
 */
export class RoutableWatch {
  private readonly dbs: Db[];
  private readonly lookups: ReturnType<typeof storeBridgeLookup>[];
  private readonly pending = new Set<{ session: CreatedJson; at: (number | undefined)[]; first: boolean[]; done: (seen: Seen) => void }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly paths: readonly string[], private readonly everyMs = 2) {
    this.dbs = paths.map((p) => openDb(p, { readonly: true }));
    this.lookups = this.dbs.map((db) => storeBridgeLookup(db));
  }

  /** Resolves when every file routes the session; rejects, naming the files that do not, after `timeoutMs`. */
  track(session: CreatedJson, timeoutMs = 20_000): Promise<Seen> {
    return new Promise((resolve, reject) => {
      const entry = {
        session,
        at: this.dbs.map((): number | undefined => undefined),
        first: this.dbs.map(() => false),
        done: (seen: Seen) => {
          clearTimeout(timer);
          resolve(seen);
        },
      };
      const timer = setTimeout(() => {
        this.pending.delete(entry);
        const missing = this.paths.filter((_, i) => entry.at[i] === undefined);
        reject(new Error(`${session.id} not routable within ${timeoutMs} ms on ${missing.join(', ')}`));
      }, timeoutMs);
      this.look(entry, true);
      if (entry.at.every((t) => t !== undefined)) return;
      this.pending.add(entry);
      this.timer ??= setInterval(() => this.poll(), this.everyMs);
    });
  }

  private look(entry: { session: CreatedJson; at: (number | undefined)[]; first: boolean[]; done: (seen: Seen) => void }, first: boolean): void {
    const at = performance.now();
    this.dbs.forEach((db, i) => {
      if (entry.at[i] === undefined && routableOn(db, entry.session, this.lookups[i])) {
        entry.at[i] = at;
        entry.first[i] = first;
      }
    });
    if (entry.at.every((t) => t !== undefined)) {
      this.pending.delete(entry);
      entry.done({ at: entry.at as number[], atFirstLook: entry.first });
    }
  }

  private poll(): void {
    for (const entry of this.pending) this.look(entry, false);
    if (this.pending.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const db of this.dbs) db.close();
  }
}

/** Whether the replica file at `path`, read now, routes the session (see routableOn). */
export function routableOnFile(path: string, session: CreatedJson): boolean {
  const db = openDb(path, { readonly: true });
  try {
    return routableOn(db, session);
  } finally {
    db.close();
  }
}

/** Wait until every file routes every session (polled every 10 ms), or fail naming what is missing. */
export async function routableWithin(paths: readonly string[], sessions: readonly CreatedJson[], timeoutMs: number): Promise<void> {
  const watch = new RoutableWatch(paths, 10);
  try {
    await Promise.all(sessions.map((s) => watch.track(s, timeoutMs)));
  } finally {
    watch.close();
  }
}

/** A pool number: the UK drama range 020 7946 0000-0999 (valid to libphonenumber-js, never a real line). */
export function poolNumber(n: number): string {
  return `+44207946${String(n).padStart(4, '0')}`;
}

/** One PBX: a netns host with its node's replica (`vnum replica`) and, when asked, a `vnum api --authority`. */
export interface Pbx {
  name: string;
  host: Host;
  /** The node's replica file (on this machine's disk; the host shares it). */
  db: string;
  replica: ReplicaCommand;
  api: AuthorityApi | undefined;
  /** A client of this PBX's API with the deployment's key. */
  client: ApiClient | undefined;
}

export interface Deployment {
  target: PgTarget;
  /** A plain client on the authority, for the tests' checks (replace it after a restart of PostgreSQL). */
  pg: pg.Client;
  /** The key (sessions, pool) every API instance accepts: it lives on the authority. */
  key: string;
  pbxs: Pbx[];
  /** Wait until every replica holds everything committed so far. */
  settle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The deployment on the file's hosts: a fresh database made the
 * authority by `vnum cluster migrate`, a key made on it by `vnum apikey
 * create --authority`, on every host a node (`vnum replica`, its own slot)
 * and, on the hosts `apis` names (all by default), a `vnum api --authority`;
 * the pool added through the first API; both replicas hold it before this
 * resolves.
 */
export async function deploy(env: ClusterEnv, options: { name: string; pool: readonly string[]; apis?: readonly number[] }): Promise<Deployment> {
  const target = await env.cluster.createDatabase(options.name);
  migrateAuthority(authorityUrl(target));
  const key = createAuthorityKey(authorityUrl(target), `${options.name}-orders`, ['sessions', 'pool']);
  const pgClient = env.cluster.client(target);
  await pgClient.connect();
  const pbxs: Pbx[] = [];
  const deployment: Deployment = {
    target,
    pg: pgClient,
    key,
    pbxs,
    settle: (timeoutMs = 30_000) => barrier(deployment.pg, pbxs.map((p) => p.db), timeoutMs),
    async stop() {
      for (const p of pbxs) await p.api?.stop();
      for (const p of pbxs) await p.replica.stop();
      await deployment.pg.end().catch(() => {});
    },
  };
  try {
    const hosts = env.hosts!.hosts;
    for (const [i, host] of hosts.entries()) {
      const name = `${options.name}_${String.fromCharCode(97 + i)}`;
      const db = join(env.dir, `${name}.db`);
      const authority = authorityUrl(target, host.gateway);
      const replica = startReplicaCommand(host, db, { VNUM_NODE: name, VNUM_AUTHORITY: authority }, [
        '--ping', '500ms', '--link-timeout', '2s', '--retry-max', '1s', '--report-every', '1s',
      ]);
      pbxs.push({ name, host, db, replica, api: undefined, client: undefined });
    }
    for (const [i, p] of pbxs.entries()) {
      if (options.apis && !options.apis.includes(i)) continue;
      p.api = await startAuthorityApi(p.host, authorityUrl(target, p.host.gateway));
      p.client = new ApiClient(p.api.url, key);
    }
    const first = pbxs.find((p) => p.client)!.client!;
    const added = await first.post('/v1/pool', { numbers: [...options.pool] });
    if (added.status !== 200) throw new Error(`adding the pool through the API: ${added.status} ${JSON.stringify(added.body)}`);
    await deployment.settle(60_000);
    return deployment;
  } catch (error) {
    await deployment.stop();
    throw error;
  }
}

/** What a client inside a host got: the answer, or the error, and how long it took by its own clock. */
export interface InsideAnswer {
  status?: number;
  retryAfter?: string | null;
  body?: { code?: string; detail?: string } & Partial<CreatedJson>;
  error?: string;
  ms: number;
}

/**
 * POST a JSON body from inside `host` (an order system on the PBX itself):
 * the only client that still reaches a host's API once its link is cut. The
 * key travels in the environment, never on a command line.
 */
export async function postFromInside(host: Host, url: string, key: string, body: unknown, timeoutMs: number): Promise<InsideAnswer> {
  const script = `
    const t = performance.now();
    fetch(process.env.URL, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + process.env.KEY },
                             body: process.env.BODY, signal: AbortSignal.timeout(Number(process.env.TIMEOUT)) })
      .then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() }), (e) => ({ error: String(e) }))
      .then((a) => process.stdout.write(JSON.stringify({ ...a, ms: performance.now() - t })));`;
  const child = host.spawn(process.execPath, ['-e', script], {
    env: { ...process.env, URL: url, KEY: key, BODY: JSON.stringify(body), TIMEOUT: String(timeoutMs) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  await new Promise((resolve) => child.once('close', resolve));
  try {
    return JSON.parse(out) as InsideAnswer;
  } catch {
    throw new Error(`the client inside ${host.netns} printed no answer: ${out} ${err}`);
  }
}
