import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The build the benchmarks run from (dist/), and the repository around it. */
export const DIST = fileURLToPath(new URL('..', import.meta.url));
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(DIST, 'src/cli/main.js');

export function profileArgs(dir: string | undefined, name: string): string[] {
  return dir ? ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}.cpuprofile`] : [];
}

/** A loopback port free a moment ago (vnum serve refuses port 0: Asterisk could not find it). Tests use it too. */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The built CLI, exactly as an operator runs it, on a free port; the port is read back from its log. */
export async function startVnum(
  dbPath: string,
  options: { timingFile?: string; profileDir?: string | undefined } = {},
): Promise<{ child: ChildProcess; port: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, VNUM_DEFAULT_COUNTRY: 'GB', VNUM_LOG_LEVEL: 'info' };
  delete env.VNUM_BENCH_TIMING;
  if (options.timingFile !== undefined) env.VNUM_BENCH_TIMING = options.timingFile;
  const child = spawn(
    process.execPath,
    [...profileArgs(options.profileDir, 'vnum-serve'), CLI, '--db', dbPath, 'serve', '--host', '127.0.0.1', '--port', String(await freePort())],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
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

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.disconnect();
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

/** Resident and peak resident memory, MB. */
export function memory(pid: number): { rssMb: number; hwmMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

/** User + system CPU time a process has used so far, seconds (/proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at state, field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
