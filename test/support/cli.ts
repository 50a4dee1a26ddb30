import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { RunAs } from './nobody.js';
import { repoPath } from './repo.js';

/** The built executable, as `npm test` builds it and as users run it. */
export const VNUM_BIN = repoPath('dist/src/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** VNUM_DEFAULT_COUNTRY and VNUM_DB come only from `env`, never from the test's own environment. */
function cliEnv(env: Record<string, string | undefined>, as: RunAs = {}): NodeJS.ProcessEnv {
  const merged: Record<string, string | undefined> = {
    ...process.env,
    VNUM_DEFAULT_COUNTRY: undefined,
    VNUM_DB: undefined,
    // Another user may not enter the test's TMPDIR.
    ...(as.uid !== undefined ? { TMPDIR: '/tmp' } : {}),
    ...env,
  };
  return Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
}

/** Runs the built CLI and waits for it; `as` runs it as another user (the test must be root) or under a umask. */
export function vnum(args: string[], env: Record<string, string | undefined> = {}, as: RunAs = {}): CliResult {
  const [command, argv] =
    as.umask === undefined
      ? [process.execPath, [VNUM_BIN, ...args]]
      : ['sh', ['-c', `umask ${as.umask} && exec "$0" "$@"`, process.execPath, VNUM_BIN, ...args]];
  const result = spawnSync(command, argv, {
    encoding: 'utf8',
    env: cliEnv(env, as),
    timeout: 30_000,
    ...(as.uid !== undefined ? { uid: as.uid } : {}),
    ...(as.gid !== undefined ? { gid: as.gid } : {}),
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The built CLI on one database file, numbers without + read as British:
 * `run` answers as the command did, `json` adds --json and parses its answer
 * (a non-zero exit throws, naming stderr). `db` is read at each call: a suite
 * may make its file in beforeAll.
 */
export function cliOnDb(db: () => string, env: Record<string, string> = { VNUM_DEFAULT_COUNTRY: 'GB' }) {
  const run = (...args: string[]): CliResult => vnum(['--db', db(), ...args], env);
  const json = (...args: string[]): any => {
    const r = run(...args, '--json');
    if (r.code !== 0) throw new Error(`vnum ${args.join(' ')} --json exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  return { run, json };
}

/** The CLI started without waiting for it (e.g. while this process holds a lock): its pid, and its result when it ends. */
export function startVnum(args: string[], env: Record<string, string | undefined> = {}): { pid: number; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [VNUM_BIN, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return { pid: child.pid!, done: new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr }))) };
}

/**
 * For CLI tests: a fresh folder per test (removed after it) and the path of a
 * database in it, not created; `run` runs the built CLI on that database.
 */
export function useCliDatabase(prefix: string): { readonly dir: string; readonly db: string; run(...args: string[]): CliResult } {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  return {
    get dir() {
      return dir;
    },
    get db() {
      return join(dir, 'vnum.db');
    },
    run: (...args: string[]) => vnum(['--db', join(dir, 'vnum.db'), ...args]),
  };
}

export interface Party {
  number: string;
  /** The virtual number the other party sees for this one and dials to reach it. */
  maskedAs: string;
  /** What this party types from another phone: only in the answer to the create that issued it. */
  pin?: string;
}

/** `session create --json`, as the CLI prints it. */
export interface SessionJson {
  id: string;
  state: string;
  expiresAt: string | null;
  parties: [Party, Party];
}

/** A temporary database and the built CLI working on it (`--db` on every command). */
export class VnumDb {
  readonly file: string;
  private readonly dir: string;

  constructor(readonly env: Record<string, string> = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'vnum-e2e-db-'));
    this.file = join(this.dir, 'vnum.db');
  }

  run(args: string[]): CliResult {
    return vnum([...args, '--db', this.file], { VNUM_DB: this.file, ...this.env });
  }

  private ok(args: string[]): string {
    const r = this.run(args);
    if (r.code !== 0) throw new Error(`vnum ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  poolAdd(numbers: string[]): void {
    this.ok(['pool', 'add', ...numbers]);
  }

  /** `args`: more flags of `session create` (--idle-timeout, --call-limit, ...). */
  createSession(id: string, first: string, second: string, args: string[] = []): SessionJson {
    return JSON.parse(this.ok(['session', 'create', id, first, second, ...args, '--json'])) as SessionJson;
  }

  /** `pool set <number> ...` */
  poolSet(number: string, ...args: string[]): void {
    this.ok(['pool', 'set', number, ...args]);
  }

  release(id: string, grace: string): void {
    this.ok(['session', 'release', id, '--grace', grace]);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
