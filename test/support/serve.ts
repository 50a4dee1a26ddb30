import { spawn, type ChildProcess } from 'node:child_process';
import { VNUM_BIN } from './cli.js';
import { freePort } from './net.js';
import { sleep } from './wait.js';

/** The built `vnum serve` as its own process, as an operator runs it. */
export interface Serve {
  child: ChildProcess;
  pid: number;
  port: number;
  /** Every line the router wrote to stderr so far (pino JSON). */
  lines(): string[];
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface ServeOptions {
  db: string;
  /** The FastAGI port; a free one when absent. */
  port?: number;
  args?: string[];
  /** Over the test's own environment; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Run under `ulimit -n <n>` (the shell raises it; CI runs as root). */
  fdLimit?: number;
  /** Run under this umask, e.g. '000'. */
  umask?: string;
}

/**
 * Started once it says it routes from its store, with
 * VNUM_DEFAULT_COUNTRY=GB and the default log level and redaction unless
 * `env` says otherwise. VNUM_RELIABILITY_PROFILE=<dir> runs it under
 * `node --cpu-prof` and leaves the profile there.
 */
export async function startServe(options: ServeOptions): Promise<Serve> {
  const port = options.port ?? (await freePort());
  const profile = process.env.VNUM_RELIABILITY_PROFILE;
  const argv = [
    ...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []),
    VNUM_BIN, '--db', options.db, 'serve', '--port', String(port), ...(options.args ?? []),
  ];
  const env = Object.fromEntries(
    Object.entries({ ...process.env, VNUM_DEFAULT_COUNTRY: 'GB', VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, ...options.env }).filter(
      ([, v]) => v !== undefined,
    ),
  ) as NodeJS.ProcessEnv;
  const shell = [
    ...(options.umask !== undefined ? [`umask ${options.umask}`] : []),
    ...(options.fdLimit !== undefined ? [`ulimit -n ${options.fdLimit}`] : []),
  ];
  const child =
    shell.length === 0
      ? spawn(process.execPath, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn('bash', ['-c', `${shell.join(' && ')} && exec "$0" "$@"`, process.execPath, ...argv], {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
  let buffered = '';
  const lines: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  while (!lines.some((l) => l.includes('routing from this store'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vnum serve did not start: ${lines.join('\n')}${buffered}`);
    }
    await sleep(20);
  }
  return {
    child,
    pid: child.pid!,
    port,
    lines: () => (buffered ? [...lines, buffered] : lines),
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
