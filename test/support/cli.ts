import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoPath } from './repo.js';

/** The built executable, as `npm test` builds it and as users run it. */
export const VNUM_BIN = repoPath('dist/src/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; VNUM_DEFAULT_COUNTRY and VNUM_DB come only from `env`, never from the test's own environment. */
export function vnum(args: string[], env: Record<string, string | undefined> = {}): CliResult {
  const merged: Record<string, string | undefined> = { ...process.env, VNUM_DEFAULT_COUNTRY: undefined, VNUM_DB: undefined, ...env };
  const result = spawnSync(process.execPath, [VNUM_BIN, ...args], {
    encoding: 'utf8',
    env: Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    timeout: 30_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface Party {
  number: string;
  /** The virtual number the other party sees for this one and dials to reach it. */
  maskedAs: string;
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

  createSession(id: string, first: string, second: string): SessionJson {
    return JSON.parse(this.ok(['session', 'create', id, first, second, '--json'])) as SessionJson;
  }

  release(id: string, grace: string): void {
    this.ok(['session', 'release', id, '--grace', grace]);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
