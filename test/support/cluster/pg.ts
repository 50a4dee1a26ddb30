import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { PgTarget } from '../../../src/replica/stream.js';
import { freePort } from '../net.js';
import { repoRoot } from '../repo.js';
import type { Blocker } from '../suite.js';
import { atExit, ownerGone } from './cleanup.js';

/**
 * A private PostgreSQL 15 cluster per test file, made by the project's own
 * script (deploy/postgres/private-cluster.sh): initdb in a folder under /tmp,
 * its own port (probed free) and socket folder, wal_level=logical, and the
 * short timeouts the tests need. Stopped and deleted at the end, at exit,
 * on a signal, or by the next run if this one was killed (the folder holds
 * its owner's pid).
 */

export const CLUSTER_SCRIPT = path.join(repoRoot, 'deploy/postgres/private-cluster.sh');
const PG_BIN = process.env.VNUM_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PREFIX = 'vnum-pg-';
const OWNER = 'owner.pid';

/** Whether a private cluster can be had here (null), or why not; decided cheaply, at collection time. */
export function pgBlocker(): Blocker {
  if (process.platform !== 'linux') return 'the private PostgreSQL cluster needs Linux';
  if (existsSync(path.join(PG_BIN, 'initdb'))) return null;
  if (process.getuid?.() !== 0) return `PostgreSQL 15 is not installed (${PG_BIN}/initdb) and installing it needs root`;
  if (!onPath('apt-get')) return 'PostgreSQL 15 is not installed and there is no apt-get';
  return null;
}

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function script(args: string[]): void {
  const run = spawnSync('bash', [CLUSTER_SCRIPT, ...args], { encoding: 'utf8', timeout: 10 * 60_000 });
  if (run.status !== 0) throw new Error(`private-cluster.sh ${args[0]} failed (${run.status ?? run.signal}): ${run.stderr.slice(-3000)}`);
}

/** Clusters whose test process is gone (killed before it could clean up). */
function removeOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(tmpdir(), name);
    const ownerFile = path.join(dir, OWNER);
    if (!existsSync(ownerFile)) continue;
    if (ownerGone(Number(readFileSync(ownerFile, 'utf8')))) {
      spawnSync('bash', [CLUSTER_SCRIPT, 'remove', dir], { stdio: 'ignore', timeout: 60_000 });
    }
  }
}

export interface PgClusterOptions {
  /** Extra addresses to listen on (they must exist: a netns host's host-side address). */
  listen?: string[];
  /** Networks trusted besides loopback (a netns subnet). */
  allow?: string[];
  /** postgresql.conf settings on top of the test defaults. */
  settings?: Record<string, string>;
}

/** What the tests run with: small WAL segments so a slot can be pushed past its limit in a second; short sender timeout. */
export const TEST_SETTINGS: Readonly<Record<string, string>> = {
  wal_sender_timeout: '5s',
  max_slot_wal_keep_size: '8MB',
  fsync: 'off',
  full_page_writes: 'off',
  checkpoint_timeout: '1h',
};

export class PgCluster {
  readonly dir: string;
  port = 0;
  private removeAtExit: () => void = () => {};
  private databases = 0;

  private constructor(private readonly options: PgClusterOptions) {
    this.dir = mkdtempSync(path.join(tmpdir(), PREFIX));
    writeFileSync(path.join(this.dir, OWNER), String(process.pid));
  }

  static async start(options: PgClusterOptions = {}): Promise<PgCluster> {
    removeOrphans();
    script(['install']);
    const cluster = new PgCluster(options);
    cluster.removeAtExit = atExit(() => spawnSync('bash', [CLUSTER_SCRIPT, 'remove', cluster.dir], { stdio: 'ignore', timeout: 60_000 }));
    await cluster.startServer();
    return cluster;
  }

  /** Start (again) on a free port, or on the port it had before, so clients reconnect to the same address. */
  async startServer(): Promise<void> {
    this.port ||= await freePort();
    const settings = { ...TEST_SETTINGS, ...this.options.settings };
    script([
      'start', this.dir, String(this.port), '--wal-segsize', '1',
      ...(this.options.listen?.length ? ['--listen', this.options.listen.join(',')] : []),
      ...(this.options.allow?.length ? ['--allow', this.options.allow.join(',')] : []),
      ...Object.entries(settings).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
    ]);
  }

  stopServer(mode: 'fast' | 'immediate' = 'fast'): void {
    script(['stop', this.dir, mode]);
  }

  /** Stop and delete the cluster. */
  remove(): void {
    this.removeAtExit();
  }

  /** A fresh database, for one test's slots and publication. */
  async createDatabase(prefix = 'vnum'): Promise<PgTarget> {
    const name = `${prefix}_${++this.databases}`;
    const admin = this.client({ host: '127.0.0.1', port: this.port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return { host: '127.0.0.1', port: this.port, user: 'postgres', database: name };
  }

  /** A plain client (pg's default parsing), errors never thrown as events. */
  client(target: PgTarget): pg.Client {
    const client = new pg.Client({ ...target, connectionTimeoutMillis: 5_000 });
    client.on('error', () => {});
    return client;
  }

  /** The server's log so far (for a failing test's message). */
  log(): string {
    try {
      return readFileSync(path.join(this.dir, 'log'), 'utf8');
    } catch {
      return '';
    }
  }
}
