import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { repoPath } from '../repo.js';
import { asteriskRoot, dialplanFile, loopback, ports } from './paths.js';
import { holdPortsLock, releasePortsLock } from './ports-lock.js';

/**
 * A real Asterisk 22 in the provisioned Debian sid root, run via chroot with a
 * minimal configuration written here, and the project's dialplan/vnum.conf
 * copied in unchanged. One instance at a time (fixed ports).
 *
 * Always stopped: by stop(), and by an exit hook if a test run dies first, so
 * no Asterisk is left running; its /proc in the root is its own (launch()).
 *
 * Several processes (another suite's run, a benchmark, a second checkout) may
 * want the fixed ports at once: they take turns through ports-lock.ts. The
 * first start() in a process takes the lock and the process keeps it until it
 * exits (a test file stops and starts Asterisk between cases, with its router
 * and sipp still bound).
 */

/** Identity settings of the carrier endpoint: the trunk both legs use. */
export interface TrunkIdentity {
  send_pai: boolean;
  send_rpid: boolean;
  trust_id_inbound: boolean;
  trust_id_outbound: boolean;
  send_connected_line: boolean;
  send_diversion: boolean;
}

/** Asterisk's own defaults for an endpoint: what an operator gets by not saying. */
export const defaultTrunkIdentity: TrunkIdentity = {
  send_pai: false,
  send_rpid: false,
  trust_id_inbound: false,
  trust_id_outbound: false,
  send_connected_line: true,
  send_diversion: true,
};

/** Everything on: the trunk most willing to carry identity in both directions. */
export const leakyTrunkIdentity: TrunkIdentity = {
  send_pai: true,
  send_rpid: true,
  trust_id_inbound: true,
  trust_id_outbound: true,
  send_connected_line: true,
  send_diversion: true,
};

export interface AsteriskOptions {
  trunk?: TrunkIdentity;
  /** Dialplan globals (VNUM_*). Unset ones take the defaults of vnum.conf. */
  globals?: Record<string, string>;
  /** Log every SIP message Asterisk sends and receives into full.log. */
  sipLog?: boolean;
  /**
   * The dialplan file copied in as vnum.conf. Always the project's own
   * dialplan/vnum.conf, except for the control test that proves the leak
   * checks can fail.
   */
  dialplanFile?: string;
  /** pjsip.conf text instead of the generated one (e.g. the sample trunk). */
  pjsipConf?: string;
  /**
   * manager.conf text: AMI on (e.g. dialplan/manager.sample.conf pointed at
   * 127.0.0.1:5038). Absent: AMI off, as Asterisk ships it.
   */
  managerConf?: string;
  /**
   * The operator's own dialplan, written into extensions.conf after the
   * include (e.g. the context VNUM_OTHER_CONTEXT names).
   */
  operatorDialplan?: string;
  /** Modules loaded beside the ones vnum.conf needs (e.g. app_dumpchan.so for the operator's context). */
  extraModules?: string[];
  /** More configuration files, by name (e.g. musiconhold.conf with the operator's classes). */
  extraConfigs?: Record<string, string>;
  /** Asterisk's umask, as a systemd drop-in's UMask= sets it (default: the harness's own, 022). */
  umask?: string;
}

const CONF_DIR = '/etc/vnum-e2e';
const STATE_DIR = '/var/tmp/vnum-e2e';
const CONF_FILE = `${CONF_DIR}/asterisk.conf`;

const MODULES = [
  // PJSIP stack
  'res_pjproject.so',
  'res_sorcery_config.so',
  'res_sorcery_memory.so',
  'res_sorcery_astdb.so',
  'res_pjsip.so',
  'res_pjsip_session.so',
  'res_pjsip_pubsub.so',
  'res_pjsip_endpoint_identifier_ip.so',
  'res_pjsip_caller_id.so',
  'res_pjsip_diversion.so',
  'res_pjsip_sdp_rtp.so',
  'res_pjsip_logger.so',
  'res_rtp_asterisk.so',
  'chan_pjsip.so',
  // calls
  'bridge_simple.so',
  'bridge_native_rtp.so',
  'res_timing_timerfd.so',
  'codec_ulaw.so',
  'codec_alaw.so',
  'codec_gsm.so',
  'format_gsm.so',
  // dialplan
  'pbx_config.so',
  'res_speech.so',
  'res_agi.so',
  'app_dial.so',
  'app_playback.so',
  'app_read.so',
  'app_verbose.so',
  'app_stack.so',
  'func_callerid.so',
  'func_strings.so',
  'func_logic.so',
  'func_timeout.so',
  'func_global.so',
  'func_channel.so',
  // announcements, limits, recording (vnum.conf's Requires:)
  'app_mixmonitor.so',
  'format_wav.so',
  'res_musiconhold.so',
  'bridge_builtin_interval_features.so',
];

function modulesOf(options: AsteriskOptions): string[] {
  return [...MODULES, ...(options.extraModules ?? [])];
}

function bool(v: boolean): string {
  return v ? 'yes' : 'no';
}

function moduleDir(root: string): string {
  const lib = path.join(root, 'usr/lib');
  for (const entry of readdirSync(lib)) {
    const dir = path.join(lib, entry, 'asterisk/modules');
    if (existsSync(dir)) return `/usr/lib/${entry}/asterisk/modules`;
  }
  throw new Error(`no asterisk/modules under ${lib}: is the root provisioned?`);
}

/** full.log: with `verbose`, every dialplan priority executed (tests read them); without, what Asterisk's packaged logger.conf keeps. */
function loggerConf(verbose: boolean): string {
  return `[general]
dateformat = %F %T.%3q

[logfiles]
full.log => notice,warning,error${verbose ? ',verbose' : ''}
`;
}

/**
 * pjsip.conf with one trunk, `carrier`, into context vnum-inbound: calls come
 * from 127.0.0.1 (sipp as the caller's carrier), dialled legs go to
 * 127.0.0.1:`contactPort` (sipp as the far end). `global` adds settings to
 * [global]; `extra` adds sections after the trunk's.
 */
export function carrierPjsipConf(
  options: { trunk?: TrunkIdentity; contactPort?: number; userAgent?: string; global?: string[]; extra?: string } = {},
): string {
  const trunk = options.trunk ?? defaultTrunkIdentity;
  return `[global]
type = global
user_agent = ${options.userAgent ?? 'vnum-e2e'}
${(options.global ?? []).map((line) => `${line}\n`).join('')}
[transport-udp]
type = transport
protocol = udp
bind = ${loopback}:${ports.asteriskSip}

; The carrier: sipp sends calls in from ${loopback}, and sipp on ${options.contactPort ?? ports.carrierOut} receives the
; dialled legs. One endpoint, as with a real trunk.
[carrier]
type = endpoint
transport = transport-udp
context = vnum-inbound
disallow = all
allow = ulaw,alaw
aors = carrier
direct_media = no
send_pai = ${bool(trunk.send_pai)}
send_rpid = ${bool(trunk.send_rpid)}
trust_id_inbound = ${bool(trunk.trust_id_inbound)}
trust_id_outbound = ${bool(trunk.trust_id_outbound)}
send_connected_line = ${bool(trunk.send_connected_line)}
send_diversion = ${bool(trunk.send_diversion)}

[carrier]
type = aor
contact = sip:${loopback}:${options.contactPort ?? ports.carrierOut}

[carrier]
type = identify
endpoint = carrier
match = ${loopback}
${options.extra ?? ''}`;
}

export function renderConfig(root: string, options: AsteriskOptions): Record<string, string> {
  const trunk = options.trunk ?? defaultTrunkIdentity;
  const globals = Object.entries(options.globals ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
  return {
    'asterisk.conf': `[directories]
astetcdir => ${CONF_DIR}
astmoddir => ${moduleDir(root)}
astvarlibdir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astdbdir => ${STATE_DIR}/lib
astkeydir => ${STATE_DIR}/lib
astspooldir => ${STATE_DIR}/spool
astrundir => ${STATE_DIR}/run
astlogdir => ${STATE_DIR}/log
astcachedir => ${STATE_DIR}/cache
astsbindir => /usr/sbin

[options]
verbose = 3
nocolor = yes
`,
    'modules.conf': `[modules]
autoload = no
${modulesOf(options).map((m) => `load => ${m}`).join('\n')}
`,
    'logger.conf': loggerConf(true),
    'cdr.conf': `[general]
enable = no
`,
    'manager.conf': options.managerConf ?? `[general]
enabled = no
`,
    'rtp.conf': `[general]
rtpstart = 20000
rtpend = 20999
`,
    'pjsip.conf': options.pjsipConf ?? carrierPjsipConf({ trunk }),
    ...(options.extraConfigs ?? {}),
    'extensions.conf': `[general]
static = yes
writeprotect = yes
clearglobalvars = yes

[globals]
${globals}

#include "vnum.conf"
${options.operatorDialplan ?? ''}`,
  };
}

function sh(args: string[], timeoutMs = 10_000): { status: number | null; out: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function asteriskIds(root: string): { uid: number; gid: number } {
  const line = readFileSync(path.join(root, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('asterisk:'));
  if (!line) throw new Error('no asterisk user in the root: is it provisioned?');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Runs `asterisk -rx` against the instance in `root`. */
function remote(root: string, command: string, timeoutMs = 10_000): { status: number | null; out: string } {
  return sh(['chroot', root, '/usr/sbin/asterisk', '-C', CONF_FILE, '-rx', command], timeoutMs);
}

function amiEnabled(options: AsteriskOptions): boolean {
  return /^\s*enabled\s*=\s*yes\b/m.test(options.managerConf ?? '');
}

/** Whether AMI answers on 127.0.0.1:5038 with its greeting. */
function amiGreets(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(ports.ami, loopback);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.on('data', (d: Buffer) => {
      if (d.toString().startsWith('Asterisk Call Manager/')) done(true);
    });
  });
}

const live = new Set<Asterisk>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const a of live) a.stopSync();
    releasePortsLock();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const a of live) a.stopSync();
      releasePortsLock();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

export class Asterisk {
  readonly root: string;
  private readonly options: AsteriskOptions;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private output = '';
  private stopped = false;

  private constructor(root: string, options: AsteriskOptions) {
    this.root = root;
    this.options = options;
  }

  static async start(options: AsteriskOptions = {}, root = asteriskRoot): Promise<Asterisk> {
    installExitHooks();
    await holdPortsLock();
    const asterisk = new Asterisk(root, options);
    live.add(asterisk);
    try {
      const { uid, gid } = asteriskIds(root);
      // A previous run that died hard may have left an instance on our socket.
      if (existsSync(path.join(root, STATE_DIR.slice(1), 'run/asterisk.ctl'))) {
        remote(root, 'core stop now', 5_000);
      }
      const confDir = path.join(root, CONF_DIR.slice(1));
      const stateDir = path.join(root, STATE_DIR.slice(1));
      rmSync(confDir, { recursive: true, force: true });
      rmSync(stateDir, { recursive: true, force: true });
      mkdirSync(confDir, { recursive: true });
      for (const [name, text] of Object.entries(renderConfig(root, options))) {
        writeFileSync(path.join(confDir, name), text, { mode: 0o644 });
      }
      // The operator's file, byte for byte.
      copyFileSync(options.dialplanFile ?? dialplanFile, path.join(confDir, 'vnum.conf'));
      for (const sub of ['lib', 'spool', 'run', 'log', 'cache']) {
        const dir = path.join(stateDir, sub);
        mkdirSync(dir, { recursive: true });
        chownSync(dir, uid, gid);
      }
      chownSync(stateDir, uid, gid);
      await asterisk.launch();
    } catch (e) {
      await asterisk.stop();
      throw e;
    }
    return asterisk;
  }

  /**
   * Runs Asterisk on the configuration already written and waits until it is
   * ready. It gets a mount namespace of its own for the /proc it needs in the
   * root: that mount is never seen outside, and goes when Asterisk does,
   * however it ends.
   */
  private async launch(): Promise<void> {
    const child = spawn(
      'unshare',
      [
        '--mount', '--propagation', 'private', '--',
        'sh', '-c', 'umask "$3" && mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/asterisk -f -U asterisk -G asterisk -C "$2"',
        'sh', this.root, CONF_FILE, this.options.umask ?? '022',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    this.output = '';
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.child === child) this.child = null;
    });
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    try {
      await this.waitReady();
      if (this.options.sipLog) this.cli('pjsip set logger on');
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.output}\n${this.logTail(40)}`);
    }
  }

  /** Stops the running Asterisk (calls in progress die with it) and waits for it to exit. */
  private async halt(): Promise<void> {
    if (!this.child) return;
    remote(this.root, 'core stop now', 5_000);
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5_000));
    if ((await Promise.race([this.exited, timer])) === 'timeout' && this.child) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /**
   * Asterisk restarted, as after a crash or an upgrade: the process stops
   * (every call with it, AMI sessions closed), then starts again on the same
   * configuration. Resolves once it is ready again.
   */
  async restart(options: { downMs?: number } = {}): Promise<void> {
    if (this.stopped) throw new Error('restart after stop');
    await this.halt();
    if (options.downMs) await new Promise((r) => setTimeout(r, options.downMs));
    await this.launch();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (!this.child) throw new Error('Asterisk exited during start-up');
      const r = remote(this.root, 'core waitfullybooted', 5_000);
      if (r.status === 0) {
        // Every listed module must be running: a missing dependency only logs.
        const modules = remote(this.root, 'module show');
        const missing = modulesOf(this.options).filter((m) => !new RegExp(`^${m.replace('.', '\\.')}\\s.*Running`, 'm').test(modules.out));
        if (missing.length > 0) throw new Error(`Asterisk modules not running: ${missing.join(', ')}`);
        const endpoints = remote(this.root, 'pjsip show endpoint carrier');
        const transports = remote(this.root, 'pjsip show transports');
        if (
          endpoints.status === 0 &&
          /Endpoint:\s+carrier/.test(endpoints.out) &&
          transports.out.includes(`${loopback}:${ports.asteriskSip}`) &&
          (!amiEnabled(this.options) || (await amiGreets()))
        ) {
          return;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('Asterisk did not become ready within 30 s');
  }

  /** A CLI command's output (`asterisk -rx`). */
  cli(command: string): string {
    const r = remote(this.root, command);
    if (r.status !== 0) throw new Error(`asterisk -rx '${command}' failed: ${r.out}`);
    return r.out;
  }

  /** Number of live channels right now. */
  activeChannels(): number {
    const out = this.cli('core show channels count');
    const m = /(\d+) active channels?/.exec(out);
    if (!m) throw new Error(`unexpected 'core show channels count' output: ${out}`);
    return Number(m[1]);
  }

  /** Waits until no channel is left (a call's both legs fully torn down). */
  async waitIdle(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.activeChannels() === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`channels still up after ${timeoutMs} ms:\n${this.cli('core show channels')}`);
  }

  /**
   * Stops writing verbose lines (every dialplan priority) to full.log, as an
   * operator's Asterisk does by default; warnings and errors stay. For the
   * benchmarks: `core set verbose 0` from a remote console does not do it.
   */
  quietLog(): void {
    writeFileSync(path.join(this.root, CONF_DIR.slice(1), 'logger.conf'), loggerConf(false), { mode: 0o644 });
    this.cli('logger reload');
  }

  /** The last lines of Asterisk's full.log (dialplan execution, warnings). */
  logTail(lines = 60): string {
    const file = path.join(this.root, STATE_DIR.slice(1), 'log/full.log');
    if (!existsSync(file)) return '';
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  }

  /** The whole full.log: tests read dialplan execution lines from it. */
  log(): string {
    const file = path.join(this.root, STATE_DIR.slice(1), 'log/full.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    if (process.env.VNUM_E2E_ASTERISK_LOG) {
      writeFileSync(process.env.VNUM_E2E_ASTERISK_LOG, this.log(), { flag: 'a' });
    }
    this.stopped = true;
    try {
      await this.halt();
    } finally {
      live.delete(this);
    }
  }

  /** For exit hooks: no awaiting possible there. */
  stopSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.child?.pid) {
      remote(this.root, 'core stop now', 3_000);
      try {
        this.child?.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    live.delete(this);
  }
}

/** The shipped dialplan/manager.sample.conf as an operator installs it: only the secret is theirs (AMI on 127.0.0.1:5038). */
export function sampleManagerConf(secret: string): string {
  const sample = readFileSync(repoPath('dialplan/manager.sample.conf'), 'utf8');
  const conf = sample.replace(/^secret\s*=.*$/m, `secret = ${secret}`);
  if (conf === sample) throw new Error('dialplan/manager.sample.conf has no "secret =" line to set');
  return conf;
}
