import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliMain, loopback, ports } from './paths.js';

/**
 * The product under test: the built CLI (`node dist/src/cli/main.js`) against
 * a temporary database, and its router (`vnum serve`) as the FastAGI server
 * Asterisk asks.
 */

export interface Party {
  number: string;
  /** The virtual number the other party sees for this one and dials to reach it. */
  maskedAs: string;
}

export interface SessionJson {
  id: string;
  state: string;
  expiresAt: string | null;
  parties: [Party, Party];
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class VnumDb {
  readonly file: string;
  readonly env: NodeJS.ProcessEnv;
  private readonly dir: string;

  constructor(env: NodeJS.ProcessEnv = {}) {
    this.dir = mkdtempSync(path.join(tmpdir(), 'vnum-e2e-db-'));
    this.file = path.join(this.dir, 'vnum.db');
    this.env = { ...process.env, VNUM_DB: this.file, ...env };
  }

  run(args: string[]): CliResult {
    const r = spawnSync(process.execPath, [cliMain, ...args, '--db', this.file], {
      encoding: 'utf8',
      env: this.env,
      timeout: 30_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
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

  route(caller: string, dialled: string): { status: string; target: string | null; cli: string | null; session: string | null } {
    return JSON.parse(this.run(['route', caller, dialled, '--json']).stdout);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether the built CLI has the `serve` command yet. */
export function cliHasServe(): boolean {
  if (!existsSync(cliMain)) return false;
  const help = spawnSync(process.execPath, [cliMain, '--help'], { encoding: 'utf8' }).stdout ?? '';
  return /^\s+serve\b/m.test(help);
}

export interface Router {
  stop(): Promise<void>;
  /** Everything it wrote (pino JSON lines on stderr). */
  output(): string;
}

export interface RouterOptions {
  port?: number;
  /** Extra environment (e.g. VNUM_AMI_USER, VNUM_AMI_SECRET_FILE). */
  env?: NodeJS.ProcessEnv;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vnum serve exited ${child.exitCode}: ${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, loopback);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`vnum serve did not listen on ${loopback}:${port}: ${output()}`);
}

/** Starts `vnum serve` on loopback: the router Asterisk asks for each call. */
export async function startRouter(db: VnumDb, options: RouterOptions = {}): Promise<Router> {
  if (!cliHasServe()) {
    throw new Error(`${cliMain} has no 'serve' command: run npm run build`);
  }
  const port = options.port ?? ports.router;
  const child = spawn(
    process.execPath,
    [cliMain, 'serve', '--host', loopback, '--port', String(port), '--db', db.file],
    { env: { ...db.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, child, () => output);
  return {
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = new Promise<'t'>((r) => setTimeout(() => r('t'), 5_000));
      if ((await Promise.race([exited, timer])) === 't') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
