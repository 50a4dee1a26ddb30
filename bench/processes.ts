import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VNUM_BIN } from '../test/support/cli.js';
import { freePort } from '../test/support/net.js';

/** The timing preload, bench/decision-timing.ts, beside this module in the bench's build. */
const DECISION_TIMING = fileURLToPath(new URL('./decision-timing.js', import.meta.url));

export function profileArgs(dir: string | undefined, name: string): string[] {
  return dir ? ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}.cpuprofile`] : [];
}

/**
 * The built CLI, exactly as an operator runs it, on a free port; the port is
 * read from its log. `timeDecisions`: with bench/decision-timing.ts preloaded
 * and an IPC channel to take the durations with (takeDecisions()).
 * `serveArgs`: more of serve's settings (e.g. a node's --when-stale).
 */
export async function startVnum(
  dbPath: string,
  options: { timeDecisions?: boolean; profileDir?: string | undefined; serveArgs?: string[] } = {},
): Promise<{ child: ChildProcess; port: number }> {
  // Metrics on, as an operator who monitors runs it: the decision path measured with its timing and counting.
  const env: NodeJS.ProcessEnv = { ...process.env, VNUM_DEFAULT_COUNTRY: 'GB', VNUM_LOG_LEVEL: 'info', VNUM_METRICS_PORT: String(await freePort()) };
  const preload = options.timeDecisions ? ['--import', DECISION_TIMING] : [];
  const child = spawn(
    process.execPath,
    [...profileArgs(options.profileDir, 'vnum-serve'), ...preload, VNUM_BIN, '--db', dbPath, 'serve', '--host', '127.0.0.1', '--port', String(await freePort()), ...(options.serveArgs ?? [])],
    {
      env,
      stdio: ['ignore', 'ignore', 'pipe', ...(options.timeDecisions ? (['ipc'] as const) : [])],
      serialization: 'advanced',
    },
  );
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vnum serve did not start in 30 s: ${log}`)), 30_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      log += chunk;
      const listening = /"port":(\d+)[^\n]*"msg":"FastAGI router listening"/.exec(log);
      if (listening) {
        clearTimeout(timer);
        resolve(Number(listening[1]));
      }
      if (log.length > 100_000) log = log.slice(-10_000);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`vnum serve exited (${code}): ${log}`));
    });
  });
  return { child, port };
}

/** The decisions a timed vnum serve made since the last call, µs each. */
export function takeDecisions(child: ChildProcess): Promise<Float64Array> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error('vnum serve did not hand over its decision times in 10 s')), 10_000);
    const onMessage = (message: { type?: string; micros?: Float64Array; dropped?: number }): void => {
      if (message.type !== 'decisions') return;
      if (message.dropped) done(new Error(`vnum serve dropped ${message.dropped} decision times: take them more often`));
      else done(null, message.micros!);
    };
    const done = (error: Error | null, micros?: Float64Array): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      if (error) reject(error);
      else resolve(micros!);
    };
    child.on('message', onMessage);
    child.send({ type: 'take-decisions' });
  });
}

/**
 * Stops a child and waits for it (SIGKILL after 10 s): by SIGTERM, as an
 * operator stops `vnum serve`, or, for the bench's own forked helpers, by
 * closing their channel, so that one running under --cpu-prof exits cleanly
 * and writes its profile.
 */
export async function stopProcess(child: ChildProcess, how: 'SIGTERM' | 'disconnect' = child.connected ? 'disconnect' : 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (how === 'disconnect' && child.connected) child.disconnect();
  else child.kill('SIGTERM');
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 10_000)));
  const outcome = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}
