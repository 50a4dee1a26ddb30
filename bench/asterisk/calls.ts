import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Asterisk } from '../../test/support/asterisk/asterisk.js';
import { CARRIER_IN, carrierInKeys, carrierInLine, carrierOutArgs } from '../../test/support/sip/sipp.js';
import type { BenchContext } from '../benchmark.js';
import { routeHeaders, SIP, type Route } from './config.js';

/**
 * The benchmark's calls: sipp as both carriers (the e2e suite's own scenario
 * files, test/support/sip/), steps of `calls` calls at a rate through one
 * route, and what each step achieved.
 */

/** A call this long after its answer, then BYE. */
export const HOLD_MS = 100;

/** The far end, answering every leg at once; ready once its UDP port is bound. */
export async function startFarEnd(dir: string): Promise<ChildProcess> {
  const child = spawn(
    'sipp',
    [
      ...carrierOutArgs({ ringMs: 0 }, dir),
      '-i', '127.0.0.1', '-p', String(SIP.uas), '-mi', '127.0.0.1', '-mp', String(SIP.uasMedia),
      '-recv_timeout', '30000', '-nostdin', '-trace_err', '-error_file', join(dir, 'uas.errors'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // 127.0.0.1:5072 in /proc/net/udp.
  const bound = `0100007F:${SIP.uas.toString(16).toUpperCase().padStart(4, '0')}`;
  const deadline = Date.now() + 5_000;
  while (!readFileSync('/proc/net/udp', 'utf8').includes(bound)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sipp UAS did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

export interface StepResult {
  route: Route;
  rate: number;
  calls: number;
  /** Calls that got their 200 (one sipp rtd row each). */
  answered: number;
  /** Calls refused, failed or never answered. */
  failed: number;
  /** Answered calls per second, first answer to last. */
  achieved: number;
  /** INVITE -> 200 of each answered call, ms (sipp rtd: whole ms). */
  rtdMs: number[];
  passed: boolean;
  summary: string;
}

export class CallRunner {
  private steps = 0;
  /** Next unused key: every step calls with pairs no earlier step used (no warm caches from repeats). */
  private nextKey = 0;
  constructor(
    private readonly asterisk: Asterisk,
    /** `caller;dialled` of live bridges, E.164 as a carrier delivers them. */
    private readonly keys: readonly string[],
    private readonly context: BenchContext,
  ) {}

  /** carrier-in.xml's injection file: the next `calls` keys, each held HOLD_MS. */
  private injection(dir: string, calls: number): string {
    const lines: string[] = [];
    for (let i = 0; i < calls; i++) {
      const [callerUser, dialled] = this.keys[this.nextKey++ % this.keys.length]!.split(';') as [string, string];
      lines.push(carrierInLine({ callerUser, dialled, holdMs: HOLD_MS }));
    }
    const file = join(dir, 'calls.csv');
    writeFileSync(file, `SEQUENTIAL\n${lines.join('\n')}\n`);
    return file;
  }

  /** `calls` calls at `rate` per second through one route; then waits for Asterisk to be idle again. */
  async step(route: Route, rate: number, calls: number): Promise<StepResult> {
    const dir = join(this.context.workDir, `step-${++this.steps}-${route}-${rate}`);
    mkdirSync(dir);
    const stats = join(dir, 'stats.csv');
    const args = [
      `127.0.0.1:5060`,
      '-sf', CARRIER_IN,
      '-inf', this.injection(dir, calls),
      ...carrierInKeys({ extraHeaders: routeHeaders(route) }),
      '-i', '127.0.0.1', '-p', String(SIP.uac),
      '-mi', '127.0.0.1', '-mp', String(SIP.uacMedia),
      '-r', String(rate), '-m', String(calls),
      '-l', String(Math.max(50, rate * 2)),
      '-recv_timeout', '8000',
      '-timeout', `${Math.ceil(calls / rate) + 30}s`, '-timeout_error',
      '-nostdin',
      '-trace_rtt', '-rtt_freq', '1',
      '-trace_stat', '-stf', stats, '-fd', '1',
      '-trace_err', '-error_file', join(dir, 'errors.log'),
    ];
    const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const failedInSipp = failedCalls(stats);
    const rtd = readRtd(dir);
    // The scenario counts a refusal as a finished call: an answer is a 200, one rtd row.
    const answered = rtd.ms.length;
    const achieved = rtd.dates.length > 1 ? (rtd.dates.length - 1) / ((rtd.dates.at(-1)! - rtd.dates[0]!) / 1000) : rtd.dates.length;
    const failed = calls - answered;
    const passed = code === 0 && failed === 0 && failedInSipp === 0 && (calls < 10 || achieved >= 0.95 * rate);
    // A step's calls must be gone before the next one, however it ended.
    try {
      await this.asterisk.waitIdle(passed ? 10_000 : 45_000);
    } catch {
      this.context.log(`channels still up after a ${route} step at ${rate}/s: hanging them up`);
      this.asterisk.cli('channel request hangup all');
      await this.asterisk.waitIdle(15_000);
    }
    const summary =
      `${route} ${rate}/s × ${calls}: ${answered} answered, ${failed} not (${failedInSipp} failed in sipp), ${achieved.toFixed(0)}/s achieved ` +
      `(sipp exit ${code}${code !== 0 && stderr.trim() ? `: ${stderr.trim().split('\n').at(-1)}` : ''})`;
    this.context.log(`${passed ? 'pass' : 'FAIL'} ${summary}`);
    return { route, rate, calls, answered, failed, achieved, rtdMs: rtd.ms, passed, summary };
  }
}

/** FailedCall(C) from sipp's last statistics line (calls sipp itself counted as failed: timeouts, unexpected messages). */
function failedCalls(file: string): number {
  if (!existsSync(file)) return Number.NaN;
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const header = lines[0]!.split(';');
  const last = lines.at(-1)!.split(';');
  return Number(last[header.indexOf('FailedCall(C)')] ?? Number.NaN);
}

/** sipp's -trace_rtt file: `Date_ms;response_time_ms;rtd_no` per answered call. */
function readRtd(dir: string): { dates: number[]; ms: number[] } {
  const file = readdirSync(dir).find((f) => f.endsWith('_rtt.csv'));
  if (file === undefined) return { dates: [], ms: [] };
  const rows = readFileSync(join(dir, file), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(';').map(Number));
  return { dates: rows.map((r) => r[0]!), ms: rows.map((r) => r[1]!) };
}
