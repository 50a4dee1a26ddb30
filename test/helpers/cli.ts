import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach } from 'vitest';

/** The built executable, as `npm test` builds it and as users run it. */
export const VNUM_BIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunAs {
  /** Run as this user and group (the test must be root to switch). */
  uid?: number;
  gid?: number;
  /** Run under this umask, e.g. '000'. */
  umask?: string;
}

/**
 * Who "another, unprivileged user" is in tests: as root, nobody (root ignores
 * file modes, so a mode test run as root proves nothing); otherwise the
 * developer's own account, to whom modes already apply.
 */
export const UNPRIVILEGED: RunAs = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

function cliEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const merged: Record<string, string | undefined> = { ...process.env, VNUM_DEFAULT_COUNTRY: undefined, VNUM_DB: undefined, ...env };
  return Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
}

export function vnum(args: string[], env: Record<string, string | undefined> = {}, as: RunAs = {}): CliResult {
  const [command, argv] =
    as.umask === undefined
      ? [process.execPath, [VNUM_BIN, ...args]]
      : ['sh', ['-c', `umask ${as.umask} && exec "$0" "$@"`, process.execPath, VNUM_BIN, ...args]];
  const result = spawnSync(command, argv, {
    encoding: 'utf8',
    env: cliEnv(env),
    timeout: 30_000,
    ...(as.uid !== undefined ? { uid: as.uid } : {}),
    ...(as.gid !== undefined ? { gid: as.gid } : {}),
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
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
