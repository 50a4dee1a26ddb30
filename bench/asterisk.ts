import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { openDb } from '../src/store/db.js';
import { Asterisk } from '../test/e2e/harness/asterisk.js';
import { uasScenario } from '../test/e2e/harness/sipp.js';
import { formatCount, percentile, type Benchmark, type BenchContext, type Figure } from './benchmark.js';
import { REPO, startVnum, stopProcess } from './processes.js';
import { startBareResponder } from './agi-bare.js';
import { sampleBridgeKeys, seedStore } from './seed.js';

/**
 * Issue 4, item 4: real SIP calls through a real Asterisk 22 (the e2e
 * harness's sid root), routed by vnum (dialplan/vnum.conf as shipped, asking
 * the real `vnum serve` over FastAGI) against the same calls through a static
 * dialplan without AGI (Set CALLERID, Dial), in one Asterisk, in one run:
 *
 *   sipp UAC 127.0.0.1:5071 --INVITE--> Asterisk 127.0.0.1:5060
 *     endpoint `carrier` (context vnum-inbound: AGI, then Dial), or, for calls
 *     carrying `X-Bench-Route: static`, endpoint `static-in` (bench-static),
 *     or `X-Bench-Route: floor`, endpoint `floor-in` (bench-floor: the static
 *     dialplan plus one FastAGI call to a bare responder, for answer times)
 *   Asterisk --INVITE--> sipp UAS 127.0.0.1:5072 (answers at once)
 *
 * The callers and DIDs are live bridges of a seeded store, so every routed
 * call is a real BRIDGE; the static calls use the same numbers, and no step
 * reuses a pair an earlier step called. After a warm-up of every route, the
 * answer time (INVITE -> 200, sipp's rtd) is measured at a low rate in
 * blocks of rotating order; then rates climb in alternating steps (vnum, static,
 * static, vnum, ...) until a step has a failed call or falls 5% short of its
 * rate (retried once, to tell a neighbour's burst from a limit), then bisect.
 * Loopback only; needs root and the provisioned root (test/e2e/provision.sh),
 * and says why it skips otherwise.
 */

const SIP = { uac: 5071, uas: 5072, uacMedia: 18000, uasMedia: 19000 } as const;
const RATE_TARGET = 0.95;
const ANSWER_ADDED_TARGET_MS = 0.5;
/** A call this long after its answer, then BYE. */
const HOLD_MS = 100;

const SIZES = {
  full: {
    sessions: 100_000,
    ladder: [100, 150, 200, 250, 300, 350, 400, 450, 500, 600],
    stepSeconds: 3,
    bisections: 2,
    answerRate: 50,
    answerBlocks: 2,
    answerSeconds: 5,
  },
  smoke: { sessions: 1_000, ladder: [5], stepSeconds: 1, bisections: 0, answerRate: 5, answerBlocks: 1, answerSeconds: 1 },
};

/**
 * vnum: dialplan/vnum.conf asking vnum serve. static: the baseline, no AGI.
 * floor: the baseline plus one FastAGI call to a bare responder that answers
 * at once (bench/agi-bare.ts), for the answer time only: what any FastAGI
 * router costs Asterisk, so the report can tell vnum's share from it.
 */
type Route = 'vnum' | 'static' | 'floor';
/** The two routes whose highest call rate is compared. */
type Climbed = 'vnum' | 'static';
const ROUTES: readonly Route[] = ['vnum', 'static', 'floor'];
const CONTEXT: Record<Route, string> = { vnum: 'vnum-inbound', static: 'bench-static', floor: 'bench-floor' };

export const asteriskBenchmark: Benchmark = {
  name: 'asterisk',
  description: 'real Asterisk 22: highest call rate with zero failures and INVITE->200 time, via vnum against a static dialplan',
  async run(context) {
    const root = process.env.VNUM_ASTERISK_ROOT ?? join(REPO, '.cache/asterisk-root');
    const blocker = provisioned(root, context);
    if (blocker !== null) return { figures: [], skipped: blocker };
    const sizes = context.smoke ? SIZES.smoke : SIZES.full;

    context.log(`seeding ${formatCount(sizes.sessions)} sessions`);
    const store = seedStore(join(context.workDir, 'asterisk.db'), { sessions: sizes.sessions, poolSize: 1000 });
    const db = openDb(store.path, { readonly: true });
    const keys = sampleBridgeKeys(db, 60_000, 19).map((k) => `${k.caller};${k.dialled}`);
    db.close();
    const scenarios = writeScenarios(context.workDir);

    const processes: ChildProcess[] = [];
    let asterisk: Asterisk | undefined;
    let floor: Server | undefined;
    try {
      const vnum = await startVnum(store.path);
      processes.push(vnum.child);
      floor = await startBareResponder();
      const uas = await startUas(scenarios.uas, context.workDir);
      processes.push(uas);
      const dialplan = join(context.workDir, 'vnum-and-static.conf');
      writeFileSync(dialplan, readFileSync(join(REPO, 'dialplan/vnum.conf'), 'utf8') + STATIC_DIALPLAN);
      asterisk = await Asterisk.start(
        { pjsipConf: PJSIP_CONF, dialplanFile: dialplan, globals: {
            VNUM_AGI_URL: `agi://127.0.0.1:${vnum.port}/route`,
            BENCH_FLOOR_AGI_URL: `agi://127.0.0.1:${(floor.address() as AddressInfo).port}/route`,
          },
        },
        root,
      );
      const version = /Asterisk (\S+)/.exec(asterisk.cli('core show version'))?.[1] ?? 'unknown';
      context.log(`Asterisk ${version} up; vnum serve on ${vnum.port}`);
      const runner = new CallRunner(asterisk, scenarios, keys, context);

      // Each route must carry one call the way it should before anything is
      // measured: a wrong setup fails here, loudly.
      for (const route of ROUTES) {
        const before = asterisk.log().length;
        const probe = await runner.step(route, 1, 1);
        const log = asterisk.log().slice(before);
        const dialled = new RegExp(`@${CONTEXT[route]}:\\d+\\] Dial\\(`).test(log);
        if (!probe.passed || !dialled) {
          throw new Error(`the ${route} route does not work: ${probe.summary}\n${log.split('\n').slice(-40).join('\n')}`);
        }
      }
      // As an operator's box runs (Asterisk's packaged logger.conf writes no
      // verbose lines to files): the harness logs every dialplan priority, ~60
      // lines a routed call against 3 for the baseline, which would bill the
      // logging to vnum.
      asterisk.quietLog();
      // Warm both routes (vnum serve's JIT, Asterisk's caches), then the answer
      // time while nothing has been overloaded yet, then the climb to failure.
      if (!context.smoke) {
        for (const route of ROUTES) await runner.step(route, 100, 500);
      }
      const answer = await answerTimes(runner, sizes);
      const ladder = await climb(runner, sizes);
      return { figures: figuresOf(ladder, answer, sizes, store.sessions), versions: { asterisk: version } };
    } finally {
      await asterisk?.stop();
      for (const child of processes) await stopProcess(child);
      floor?.close();
    }
  },
};

// ---------------------------------------------------------------------------
// Can it run here

function provisioned(root: string, context: BenchContext): string | null {
  if (process.platform !== 'linux') return 'Asterisk runs in a Linux chroot; this is not Linux';
  if (process.getuid?.() !== 0) return 'not running as root (chroot, mount and debootstrap need root)';
  context.log(`provisioning ${root} (test/e2e/provision.sh; fast when cached)`);
  const run = spawnSync('bash', [join(REPO, 'test/e2e/provision.sh')], {
    encoding: 'utf8',
    env: { ...process.env, VNUM_ASTERISK_ROOT: root },
    timeout: 15 * 60_000,
  });
  if (run.status !== 0) {
    const why = (run.stderr ?? '').trim().split('\n').slice(-1)[0] ?? `exit ${run.status}`;
    return `cannot provision Asterisk: ${why}`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Asterisk configuration

/** An endpoint for calls carrying `X-Bench-Route: <route>`, into that route's context. */
function headerRoute(route: Exclude<Route, 'vnum'>): string {
  return `[${route}-in]
type = endpoint
transport = transport-udp
context = ${CONTEXT[route]}
disallow = all
allow = ulaw,alaw
direct_media = no

[${route}-in]
type = identify
endpoint = ${route}-in
match_header = X-Bench-Route: ${route}
`;
}

export const PJSIP_CONF = `[global]
type = global
user_agent = vnum-bench
; Calls marked X-Bench-Route: static or floor are the baselines'; the rest are the carrier's.
endpoint_identifier_order = header,ip

[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:5060

; The carrier, as in the e2e suite: context vnum-inbound (dialplan/vnum.conf).
[carrier]
type = endpoint
transport = transport-udp
context = vnum-inbound
disallow = all
allow = ulaw,alaw
aors = carrier
direct_media = no

[carrier]
type = aor
contact = sip:127.0.0.1:${SIP.uas}

[carrier]
type = identify
endpoint = carrier
match = 127.0.0.1

; The baselines' ways in: the same trunk settings, their own contexts.
${headerRoute('static')}
${headerRoute('floor')}`;

/**
 * The baseline: the same call without vnum. The caller ID a masked call
 * presents, then Dial through the same trunk to the same far end. No router,
 * no checks. Appended to a copy of dialplan/vnum.conf, whose own contexts are
 * untouched.
 */
export const STATIC_DIALPLAN = `

; ---- bench/asterisk.ts: the baseline, no AGI --------------------------------
[bench-static]
exten => _[+0-9].,1,Set(CALLERID(num)=+442079460001)
 same => n,Set(CALLERID(name)=+442079460001)
 same => n,Dial(PJSIP/\${EXTEN}@carrier,60)
 same => n,Hangup()

; The FastAGI floor: the baseline plus one FastAGI call to a responder that
; answers at once, bounded as vnum.conf bounds its router.
[bench-floor]
exten => _[+0-9].,1,Set(AGIEXITONHANGUP=yes)
 same => n,Set(TIMEOUT(absolute)=3)
 same => n,AGI(\${GLOBAL(BENCH_FLOOR_AGI_URL)})
 same => n,Set(TIMEOUT(absolute)=0)
 same => n,Set(CALLERID(num)=+442079460001)
 same => n,Set(CALLERID(name)=+442079460001)
 same => n,Dial(PJSIP/\${EXTEN}@carrier,60)
 same => n,Hangup()
`;

// ---------------------------------------------------------------------------
// sipp

interface Scenarios {
  uac: Record<Route, string>;
  uas: string;
}

const FAILURES = [400, 403, 404, 408, 480, 484, 486, 487, 488, 500, 502, 503, 504, 603];

function uacScenario(route: Route): string {
  const marker = route === 'vnum' ? '' : `\n      X-Bench-Route: ${route}`;
  const failures = FAILURES.map((code) => `  <recv response="${code}" optional="true" next="failed"/>`).join('\n');
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench ${route}">
  <send retrans="500" start_rtd="1">
    <![CDATA[
      INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70${marker}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>
  <label id="wait_final"/>
  <recv response="100" optional="true" next="wait_final"/>
  <recv response="180" optional="true" next="wait_final"/>
  <recv response="183" optional="true" next="wait_final"/>
${failures}
  <recv response="200" rtd="1" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      [routes]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="${HOLD_MS}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      [routes]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <nop next="done"/>

  <!-- Refused: acknowledge it (or Asterisk keeps the channel ~32 s), then count the call as failed:
       a receive that times out fails the call (exec stop_call would count it as a success). -->
  <label id="failed"/>
  <send>
    <![CDATA[
      ACK sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE" timeout="10"/>
  <label id="done"/>
</scenario>
`;
}


export function writeScenarios(dir: string): Scenarios {
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  return {
    uac: {
      vnum: file('uac-vnum.xml', uacScenario('vnum')),
      static: file('uac-static.xml', uacScenario('static')),
      floor: file('uac-floor.xml', uacScenario('floor')),
    },
    // The e2e suite's far end, answering at once.
    uas: file('uas.xml', uasScenario({ ringMs: 0 })),
  };
}

export async function startUas(scenario: string, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'sipp',
    ['-sf', scenario, '-i', '127.0.0.1', '-p', String(SIP.uas), '-mi', '127.0.0.1', '-mp', String(SIP.uasMedia), '-recv_timeout', '30000', '-nostdin', '-trace_err', '-error_file', join(dir, 'uas.errors')],
    { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // Ready once its UDP port is bound (127.0.0.1:5072 in /proc/net/udp).
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

interface StepResult {
  route: Route;
  rate: number;
  calls: number;
  succeeded: number;
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
    private readonly scenarios: Scenarios,
    /** `caller;dialled` of live bridges, E.164 as a carrier delivers them. */
    private readonly keys: readonly string[],
    private readonly context: BenchContext,
  ) {}

  private injection(dir: string, calls: number): string {
    const lines: string[] = [];
    for (let i = 0; i < calls; i++) lines.push(this.keys[this.nextKey++ % this.keys.length]!);
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
      '-sf', this.scenarios.uac[route],
      '-inf', this.injection(dir, calls),
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
    const counts = finalCounts(stats);
    const rtd = readRtd(dir);
    const achieved = rtd.dates.length > 1 ? (rtd.dates.length - 1) / ((rtd.dates.at(-1)! - rtd.dates[0]!) / 1000) : rtd.dates.length;
    const failed = counts.failed + Math.max(0, calls - counts.succeeded - counts.failed);
    const passed = code === 0 && failed === 0 && counts.succeeded === calls && (calls < 10 || achieved >= 0.95 * rate);
    // A step's calls must be gone before the next one, however it ended.
    try {
      await this.asterisk.waitIdle(passed ? 10_000 : 45_000);
    } catch {
      this.context.log(`channels still up after a ${route} step at ${rate}/s: hanging them up`);
      this.asterisk.cli('channel request hangup all');
      await this.asterisk.waitIdle(15_000);
    }
    const summary = `${route} ${rate}/s × ${calls}: ${counts.succeeded} answered, ${failed} failed, ${achieved.toFixed(0)}/s achieved (sipp exit ${code}${code !== 0 && stderr.trim() ? `: ${stderr.trim().split('\n').at(-1)}` : ''})`;
    this.context.log(`${passed ? 'pass' : 'FAIL'} ${summary}`);
    return { route, rate, calls, succeeded: counts.succeeded, failed, achieved, rtdMs: rtd.ms, passed, summary };
  }
}

/** SuccessfulCall(C) and FailedCall(C) from sipp's last statistics line. */
function finalCounts(file: string): { succeeded: number; failed: number } {
  if (!existsSync(file)) return { succeeded: 0, failed: 0 };
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const header = lines[0]!.split(';');
  const last = lines.at(-1)!.split(';');
  const field = (name: string) => Number(last[header.indexOf(name)] ?? Number.NaN);
  return { succeeded: field('SuccessfulCall(C)'), failed: field('FailedCall(C)') };
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

// ---------------------------------------------------------------------------
// The measurements

interface Ladder {
  /** Highest rate passed, per route, and whether a failing rate above it was found. */
  best: Record<Climbed, { rate: number; achieved: number; capped: boolean }>;
  retries: number;
  steps: StepResult[];
}

async function climb(runner: CallRunner, sizes: (typeof SIZES)['full'] | (typeof SIZES)['smoke']): Promise<Ladder> {
  const best: Ladder['best'] = {
    vnum: { rate: 0, achieved: 0, capped: false },
    static: { rate: 0, achieved: 0, capped: false },
  };
  const failedAt: Record<Climbed, number> = { vnum: Infinity, static: Infinity };
  const steps: StepResult[] = [];
  let retries = 0;
  let flip = false;
  const tryRate = async (route: Climbed, rate: number): Promise<boolean> => {
    const calls = Math.round(rate * sizes.stepSeconds);
    let result = await runner.step(route, rate, calls);
    steps.push(result);
    if (!result.passed) {
      retries++;
      result = await runner.step(route, rate, calls);
      steps.push(result);
    }
    if (result.passed) {
      if (rate > best[route].rate) best[route] = { rate, achieved: result.achieved, capped: false };
    } else failedAt[route] = Math.min(failedAt[route], rate);
    return result.passed;
  };
  for (const rate of sizes.ladder) {
    const routes: Climbed[] = flip ? ['static', 'vnum'] : ['vnum', 'static'];
    flip = !flip;
    let any = false;
    for (const route of routes) {
      if (failedAt[route] !== Infinity) continue;
      any = true;
      await tryRate(route, rate);
    }
    if (!any) break;
  }
  for (let i = 0; i < sizes.bisections; i++) {
    for (const route of ['vnum', 'static'] as const) {
      if (failedAt[route] === Infinity) continue;
      const mid = Math.round((best[route].rate + failedAt[route]) / 2 / 10) * 10;
      if (mid > best[route].rate && mid < failedAt[route]) await tryRate(route, mid);
    }
  }
  for (const route of ['vnum', 'static'] as const) best[route].capped = failedAt[route] === Infinity;
  return { best, retries, steps };
}

type AnswerTimes = Record<Route, number[]>;

async function answerTimes(runner: CallRunner, sizes: (typeof SIZES)['full'] | (typeof SIZES)['smoke']): Promise<AnswerTimes> {
  const times: AnswerTimes = { vnum: [], static: [], floor: [] };
  const calls = sizes.answerRate * sizes.answerSeconds;
  for (let block = 0; block < sizes.answerBlocks; block++) {
    // Each block a different order: no route always follows the same one.
    const order = ROUTES.map((_, i) => ROUTES[(i + block) % ROUTES.length]!);
    for (const route of order) {
      let result = await runner.step(route, sizes.answerRate, calls);
      if (!result.passed) result = await runner.step(route, sizes.answerRate, calls);
      if (!result.passed) throw new Error(`answer-time block failed twice at ${sizes.answerRate}/s: ${result.summary}`);
      times[route].push(...result.rtdMs);
    }
  }
  return times;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function figuresOf(ladder: Ladder, answer: AnswerTimes, sizes: (typeof SIZES)['full'] | (typeof SIZES)['smoke'], sessions: number): Figure[] {
  const { vnum, static: baseline } = ladder.best;
  const rateRatio = baseline.rate > 0 ? vnum.rate / baseline.rate : 0;
  const bound = (b: { capped: boolean }) => (b.capped ? ' (no failure up to the top of the ladder: a lower bound)' : '');
  const setup = `one Asterisk, sipp UAC and UAS, vnum serve (${formatCount(sessions)} live sessions), routes side by side on 127.0.0.1; calls held ${HOLD_MS} ms`;
  const vnumMean = mean(answer.vnum);
  const staticMean = mean(answer.static);
  const floorMean = mean(answer.floor);
  const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
  const answerSize =
    `${formatCount(answer.vnum.length)} calls a route at ${sizes.answerRate}/s in blocks of rotating order; sipp rtd (whole ms, so the mean of many calls); ` +
    `added ${(vnumMean - staticMean).toFixed(2)} ms, of which a bare FastAGI call ${(floorMean - staticMean).toFixed(2)} ms`;
  return [
    {
      name: `highest call rate with zero failed calls, through vnum (dialplan/vnum.conf + FastAGI to vnum serve)${bound(vnum)}`,
      unit: '/s',
      value: vnum.rate,
      baseline: { name: `the same calls through a static dialplan (Set CALLERID, Dial), no AGI${bound(baseline)}`, value: baseline.rate },
      target: { text: `≥ ${RATE_TARGET}× the static dialplan`, met: rateRatio >= RATE_TARGET },
      size: `${setup}; ${sizes.stepSeconds} s steps, alternating routes, a failed step retried once (${ladder.retries} retries); achieved ${vnum.achieved.toFixed(0)}/s and ${baseline.achieved.toFixed(0)}/s`,
    },
    {
      name: 'mean INVITE→200 (answer time) through vnum',
      unit: 'ms',
      value: vnumMean,
      baseline: { name: 'mean INVITE→200 through the static dialplan', value: staticMean },
      target: { text: `≤ ${ANSWER_ADDED_TARGET_MS} ms added`, met: vnumMean - staticMean <= ANSWER_ADDED_TARGET_MS },
      size: `${setup}; ${answerSize}`,
    },
    {
      name: 'INVITE→200 p99 through vnum',
      unit: 'ms',
      value: percentile(sorted(answer.vnum), 99),
      baseline: { name: 'INVITE→200 p99 through the static dialplan', value: percentile(sorted(answer.static), 99) },
      size: `${setup}; ${answerSize}`,
    },
    {
      name: 'mean INVITE→200 through the static dialplan plus one FastAGI call to a bare responder (what any FastAGI router costs)',
      unit: 'ms',
      value: floorMean,
      baseline: { name: 'mean INVITE→200 through the static dialplan', value: staticMean },
      size: `${setup}; ${answerSize}; vnum above this floor ${(vnumMean - floorMean).toFixed(2)} ms`,
    },
  ];
}
