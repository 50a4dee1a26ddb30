/**
 * `vnum serve`, the composition root: the one place that wires the FastAGI
 * server (agi/), the router (src/routing), the call log (src/calls), AMI
 * (src/ami) and the store together. Everything it starts, it stops.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import type { Logger } from 'pino';
import { DEFAULT_ALLOW } from '../../agi/allow-list.js';
import { FASTAGI_DEFAULTS, startFastAgiServer, type AgiAnswer, type AgiEnvironment, type AgiHandler, type FastAgiServer } from '../../agi/server.js';
import { AmiClient } from '../ami/client.js';
import { CALL_EVENT_CLASSES, CALL_EVENTS } from '../calls/facts.js';
import { routerKey } from '../calls/store.js';
import { CallTracker, type AsteriskCall } from '../calls/tracker.js';
import { ErrorCode, VnumError } from '../errors.js';
import { createLogger } from '../log.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { answerFor, channelVariables, ERROR_ANSWER, type CallDefaults, type Prompts, type RouteAnswer } from '../routing/answer.js';
import type { RecordingSettings } from '../calls/recordings.js';
import { CALL_LIMITS, checkClassName, checkSoundName } from '../session/call-settings.js';
import { formatDuration, MAX_DURATION_MS } from '../duration.js';
import type { RouteDecision } from '../routing/decide.js';
import { createCallRouter, type RoutedCall } from '../routing/service.js';
import { CachedFigures, workerReader } from '../metrics/cached-figures.js';
import { RouterMetrics } from '../metrics/router.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import { FRESHNESS_DEFAULTS, WHEN_STALE, type FreshnessPolicy, type WhenStale } from '../replica/freshness.js';
import { createFreshnessGate } from '../replica/gate.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { SlideQueue } from '../calls/slide-queue.js';
import { SlidingSessions } from '../calls/sliding.js';
import { CallShipper } from '../calls/shipping.js';
import type { PgTarget } from '../replica/stream.js';
import { addAuthoritySetting, authorityName } from './authority.js';
import { amiSettings, type AmiSettings } from './ami-settings.js';
import { addOutOfSessionSettings, outOfSessionSettings, type OutOfSessionSettings } from './out-of-session-settings.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, globalOptions, numberPolicy } from './context.js';
import { listenError } from './failure.js';
import { stopSignal } from './stop-signal.js';
import { addSetting, allowSetting, boundedDuration, boundedInteger, configurationError, formatMs, hostSetting, portOrOff, SETTING_LIMITS, span, tcpPort } from './settings.js';

// ---------------------------------------------------------------------------
// A FastAGI connection as a routed call, and back

/** The call Asterisk describes in its FastAGI environment. */
export type InboundCall = RoutedCall & AsteriskCall;

export function inboundCall(env: AgiEnvironment): InboundCall {
  return {
    callerId: env.get('agi_callerid') ?? '',
    extension: env.get('agi_extension') ?? '',
    dnid: env.get('agi_dnid') ?? '',
    uniqueId: env.get('agi_uniqueid') ?? '',
    channel: env.get('agi_channel') ?? '',
  };
}

/** An answer as the FastAGI server writes it, with what the connection's log line should say. */
export function agiAnswer(answer: RouteAnswer): AgiAnswer {
  return { variables: channelVariables(answer), log: { status: answer.status, session: answer.session || undefined } };
}

/** Written by the FastAGI server when routing throws: ERROR. */
export const FALLBACK_ANSWER: AgiAnswer = Object.freeze(agiAnswer(ERROR_ANSWER));

/** What the router does for callers without a bridge: their PIN, and what they hear. */
export interface OutOfSessionRouting {
  pin: (call: InboundCall, pin: string) => RouteDecision;
  prompts: Prompts;
}

/**
 * The handler that routes each call: the decision, as the channel variables
 * the dialplan reads (ERROR when it fails src/routing/answer.ts's checks);
 * `routed` hears every answer (the call log). `AGI(<url>,pin,<digits>)` is a
 * PIN typed after the router asked for one (dialplan/README.md).
 */
export function routeCalls(
  route: (call: InboundCall) => RouteDecision,
  logger: Logger,
  routed?: (call: InboundCall, answer: RouteAnswer, decision: RouteDecision) => void,
  outOfSession?: OutOfSessionRouting,
  defaults: CallDefaults = {},
): AgiHandler {
  return (env) => {
    const call = inboundCall(env);
    const decision =
      outOfSession !== undefined && env.get('agi_arg_1') === 'pin' ? outOfSession.pin(call, env.get('agi_arg_2') ?? '') : route(call);
    let answer = answerFor(decision, outOfSession?.prompts, defaults);
    if (answer === undefined) {
      const status: unknown = typeof decision === 'object' && decision !== null ? decision.status : decision;
      logger.error(
        { status: typeof status === 'string' ? status.slice(0, 64) : typeof status },
        'route returned values that fail validation: answering VNUM_STATUS=ERROR',
      );
      answer = ERROR_ANSWER;
    }
    routed?.(call, answer, decision);
    return agiAnswer(answer);
  };
}

// ---------------------------------------------------------------------------
// The command

export interface ServeSettings {
  host: string;
  port: number;
  allow: string[];
  maxConnections: number;
  deadlineMs: number;
  drainMs: number;
  ami: AmiSettings | null;
  defaultCountry: string | undefined;
  policy: NumberPolicy;
  freshness: FreshnessPolicy;
  /** The Prometheus endpoint; null: off. */
  metrics: { host: string; port: number; storeAgeMs: number } | null;
  outOfSession: OutOfSessionSettings;
  /** Announcements, warning and recording for sessions that do not set their own. */
  calls: CallDefaults;
  recordings: RecordingSettings | null;
  /** Cluster node: where sliding sessions' pushes go (docs/cluster.md, "Sliding sessions on a node"); undefined: none. */
  authority?: PgTarget | undefined;
}

interface ServeOptions {
  authority: PgTarget | undefined;
  host: string;
  port: number;
  allow: string[];
  maxConnections: number;
  deadline: number;
  drain: number;
  whenStale: WhenStale;
  staleAfter: number;
  metricsHost: string;
  metricsPort: number | null;
  metricsStoreAge: number;
  amiHost?: string;
  amiPort?: string;
  amiUser?: string;
  amiSecretFile?: string;
  calleeAnnouncement?: string;
  callerAnnouncement?: string;
  limitWarning?: number;
  limitWarningSound: string;
  record?: boolean;
  recordingsDir?: string;
  recordingNotice?: string;
  recordingRetention: number;
}

/** How long recordings are kept by default; at least a second (tests), at most MAX_DURATION_MS. */
export const DEFAULT_RECORDING_RETENTION_MS = 30 * 86_400_000;

const soundSetting = (name: string, text: string): string => asSetting(name, text, () => checkSoundName(text, name));
const classSetting = (name: string, text: string): string => asSetting(name, text, () => checkClassName(text, name));

function asSetting<T>(name: string, text: string, judge: () => T): T {
  try {
    return judge();
  } catch (e) {
    throw configurationError(name, text, (e as Error).message.replace(/^invalid [^:]*: /, ''));
  }
}

/** The recordings folder: absolute, an existing directory (vnum never creates it: its owner and mode are the operator's). */
function recordingsDir(name: string, text: string): string {
  if (!path.isAbsolute(text)) throw configurationError(name, text, 'an absolute path');
  let isDir = false;
  try {
    isDir = statSync(text).isDirectory();
  } catch {
    throw configurationError(name, text, 'no such folder (create it as docs/operator-guide.md says, "Recordings")');
  }
  if (!isDir) throw configurationError(name, text, 'not a folder');
  return path.resolve(text);
}

/** The call-shaping settings judged together: recording needs a folder, a consent notice and AMI (the call log). */
function callSettingsOf(options: ServeOptions, ami: AmiSettings | null): { calls: CallDefaults; recordings: RecordingSettings | null } {
  const { recordingsDir: dir, recordingNotice } = options;
  if (options.record && dir === undefined) {
    throw new VnumError(ErrorCode.Configuration, '--record needs --recordings-dir: the folder Asterisk records into');
  }
  if (dir !== undefined && recordingNotice === undefined) {
    throw new VnumError(ErrorCode.Configuration, '--recordings-dir needs --recording-notice: the consent prompt the caller hears before a recorded call connects');
  }
  if (dir !== undefined && ami === null) {
    throw new VnumError(ErrorCode.Configuration, '--recordings-dir needs AMI (--ami-user): recordings are tracked, measured and deleted through the call log');
  }
  return {
    calls: {
      calleeAnnouncement: options.calleeAnnouncement,
      callerAnnouncement: options.callerAnnouncement,
      limitWarningMs: options.limitWarning,
      limitWarningSound: options.limitWarningSound,
      record: options.record ?? false,
      recordingNotice: dir === undefined ? undefined : recordingNotice,
    },
    recordings: dir === undefined ? null : { dir, retentionMs: options.recordingRetention },
  };
}

export function registerServe(program: Command): void {
  const serve = program.command('serve').description('run the FastAGI call router that dialplan/vnum.conf asks for each call');
  addSetting(serve, { flags: '--host <address>', description: 'address to listen on', judge: hostSetting, default: { value: FASTAGI_DEFAULTS.host }, env: 'VNUM_AGI_HOST' });
  addSetting(serve, { flags: '--port <port>', description: 'TCP port', judge: tcpPort, default: { value: FASTAGI_DEFAULTS.port }, env: 'VNUM_AGI_PORT' });
  addSetting(serve, {
    flags: '--allow <addresses>',
    description: 'comma-separated addresses or CIDR subnets allowed to connect: your Asterisk, and where vnum health runs',
    judge: allowSetting,
    default: { value: [...DEFAULT_ALLOW], shown: DEFAULT_ALLOW.join(',') },
    env: 'VNUM_AGI_ALLOW',
  });
  addSetting(serve, {
    flags: '--max-connections <n>',
    description: `concurrent calls being routed, ${SETTING_LIMITS.maxConnections.min} to ${SETTING_LIMITS.maxConnections.max}`,
    judge: boundedInteger(SETTING_LIMITS.maxConnections),
    default: { value: FASTAGI_DEFAULTS.maxConnections },
  });
  addSetting(serve, {
    flags: '--deadline <duration>',
    description: `hard limit on one routing connection, ${span(SETTING_LIMITS.deadlineMs)}`,
    judge: boundedDuration(SETTING_LIMITS.deadlineMs),
    default: { value: FASTAGI_DEFAULTS.deadlineMs, shown: `${FASTAGI_DEFAULTS.deadlineMs}ms` },
  });
  addSetting(serve, {
    flags: '--drain <duration>',
    description: `on SIGTERM, how long calls in flight may finish, ${span(SETTING_LIMITS.drainMs)}`,
    judge: boundedDuration(SETTING_LIMITS.drainMs),
    default: { value: 2000, shown: '2s' },
  });
  addSetting(serve, {
    flags: '--when-stale <policy>',
    description: `cluster node: when its replica is older than --stale-after, ${WHEN_STALE.join(' or ')} (docs/cluster.md, "Freshness")`,
    judge: whenStaleSetting,
    default: { value: FRESHNESS_DEFAULTS.whenStale },
    env: 'VNUM_WHEN_STALE',
  });
  addSetting(serve, {
    flags: '--stale-after <duration>',
    description: `cluster node: how old its replica may be before it is stale, ${span(SETTING_LIMITS.staleAfterMs)}`,
    judge: boundedDuration(SETTING_LIMITS.staleAfterMs),
    default: { value: FRESHNESS_DEFAULTS.staleAfterMs, shown: formatMs(FRESHNESS_DEFAULTS.staleAfterMs) },
    env: 'VNUM_STALE_AFTER',
  });
  addSetting(serve, {
    flags: '--metrics-port <port>',
    description: 'serve Prometheus metrics at http://<metrics-host>:<port>/metrics, or off',
    judge: portOrOff,
    default: { value: null, shown: 'off' },
    env: 'VNUM_METRICS_PORT',
  });
  addSetting(serve, {
    flags: '--metrics-host <address>',
    description: 'address the metrics endpoint listens on (keep it on loopback or a monitoring network)',
    judge: hostSetting,
    default: { value: '127.0.0.1' },
    env: 'VNUM_METRICS_HOST',
  });
  addSetting(serve, {
    flags: '--metrics-store-age <duration>',
    description: `how old the store figures on /metrics (sessions, pool, headroom) may get before a scrape has them read again, ${span(SETTING_LIMITS.metricsStoreAgeMs)}`,
    judge: boundedDuration(SETTING_LIMITS.metricsStoreAgeMs),
    default: { value: 30_000, shown: '30s' },
    env: 'VNUM_METRICS_STORE_AGE',
  });
  addOutOfSessionSettings(serve);
  addAuthoritySetting(serve);
  serve
    .option('--country <XX>', 'default country for numbers without + (VNUM_DEFAULT_COUNTRY)')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .addOption(new Option('--ami-user <name>', 'AMI user: turns on the call log and hang-ups through AMI').env('VNUM_AMI_USER'))
    .addOption(new Option('--ami-host <address>', 'AMI address (default 127.0.0.1)').env('VNUM_AMI_HOST'))
    .addOption(new Option('--ami-port <port>', 'AMI port (default 5038)').env('VNUM_AMI_PORT'))
    .addOption(new Option('--ami-secret-file <file>', 'file holding the AMI secret, owner-only (or VNUM_AMI_SECRET)').env('VNUM_AMI_SECRET_FILE'))
    .addOption(new Option('--record', "record every session's calls unless the session says --no-record (needs --recordings-dir)").env('VNUM_RECORD'));
  addSetting(serve, { flags: '--callee-announcement <sound>', description: 'default sound played to the callee on answer, before the call connects', judge: soundSetting, env: 'VNUM_CALLEE_ANNOUNCEMENT' });
  addSetting(serve, { flags: '--caller-announcement <class>', description: 'default music-on-hold class the caller hears while the callee rings', judge: classSetting, env: 'VNUM_CALLER_ANNOUNCEMENT' });
  addSetting(serve, { flags: '--limit-warning <duration>', description: `default warning this long before the call limit, ${span(CALL_LIMITS.limitWarningMs)}`, judge: boundedDuration(CALL_LIMITS.limitWarningMs), env: 'VNUM_LIMIT_WARNING' });
  addSetting(serve, { flags: '--recordings-dir <folder>', description: 'the folder Asterisk records into, as this host sees it (turns recording on)', judge: recordingsDir, env: 'VNUM_RECORDINGS_DIR' });
  addSetting(serve, { flags: '--recording-notice <sound>', description: 'the consent prompt played to the caller before a recorded call connects', judge: soundSetting, env: 'VNUM_RECORDING_NOTICE' });
  addSetting(serve, {
    flags: '--limit-warning-sound <sound>',
    description: 'the sound of the limit warning',
    judge: soundSetting,
    default: { value: 'beep' },
    env: 'VNUM_LIMIT_WARNING_SOUND',
  });
  addSetting(serve, {
    flags: '--recording-retention <duration>',
    description: `how long recordings are kept after their call, then deleted, 1s to ${formatDuration(MAX_DURATION_MS)}`,
    judge: boundedDuration({ min: 1_000, max: MAX_DURATION_MS }),
    default: { value: DEFAULT_RECORDING_RETENTION_MS, shown: '30d' },
    env: 'VNUM_RECORDING_RETENTION',
  });
  serve
    .action(async (options: ServeOptions, command: Command) => {
      // Every setting, the logger's included, is judged before a database is opened, created or migrated.
      const logger = createLogger();
      const ami = amiSettings(options);
      const settings: ServeSettings = {
        host: options.host,
        port: options.port,
        allow: options.allow,
        maxConnections: options.maxConnections,
        deadlineMs: options.deadline,
        drainMs: options.drain,
        ami,
        // Settings every command shares keep the code they have everywhere: VNUM_INVALID_COUNTRY, VNUM_INVALID_ARGUMENT.
        defaultCountry: defaultCountry(command),
        policy: numberPolicy(command),
        freshness: { whenStale: options.whenStale, staleAfterMs: options.staleAfter },
        metrics:
          options.metricsPort === null ? null : { host: options.metricsHost, port: options.metricsPort, storeAgeMs: options.metricsStoreAge },
        outOfSession: outOfSessionSettings(options as unknown as Record<string, unknown>),
        ...callSettingsOf(options, ami),
        authority: options.authority,
      };
      await runRouter(resolveDbPath(globalOptions(command).db), settings, logger);
    });
}

function whenStaleSetting(name: string, text: string): WhenStale {
  if ((WHEN_STALE as readonly string[]).includes(text)) return text as WhenStale;
  throw configurationError(name, text, `one of ${WHEN_STALE.join(', ')}`);
}

/** Wire everything, serve until SIGTERM or SIGINT, then stop it all in order. */
async function runRouter(dbPath: string, settings: ServeSettings, logger: Logger): Promise<void> {
  const { host, port, ami } = settings;
  // Sliding sessions on a cluster node: pushed to the authority off the call path (src/calls/sliding.ts).
  // pg is loaded only when there is an authority; nothing here connects: an authority that is down
  // costs pushes, never the start or a call.
  const slider = settings.authority ? (await import('../authority/pg-slide.js')).pgSlider(settings.authority) : null;
  const slideQueue = slider ? new SlideQueue({ send: slider.send, logger: logger.child({ component: 'sliding' }) }) : null;
  // The call log shipped to the authority (src/calls/shipping.ts): the file stays the log; a background
  // loop copies what changed, never in the call's way. Only a replica's file ships (it names the node).
  const callSender = settings.authority ? (await import('../authority/pg-calls.js')).pgCallShipper(settings.authority) : null;
  const shipper = callSender ? new CallShipper({ dbPath, send: callSender.send, logger: logger.child({ component: 'call shipping' }) }) : null;
  const sliding = new SlidingSessions({
    queue: slideQueue,
    authority: settings.authority ? authorityName(settings.authority) : null,
    logger: logger.child({ component: 'sliding' }),
  });
  // Open once now so a wrong path or a broken file stops the start, not the first call;
  // and say now whether this file is a replica whose sliding sessions slide from here.
  const opened = openDb(dbPath, { mode: 'create' });
  try {
    if (!sliding.replica(opened) && slider) logger.warn({ authority: authorityName(settings.authority!) }, '--authority is for a cluster node: this file is not (yet) a replica, so sliding pushes are written into it until vnum replica claims it');
  } finally {
    opened.close();
  }
  const { handling, pinLimits, prompts } = settings.outOfSession;
  const callRouter = createCallRouter({ dbPath, defaultCountry: settings.defaultCountry, policy: settings.policy, logger, handling, pinLimits });
  const amiClient = ami ? new AmiClient({ ...ami, eventClasses: CALL_EVENT_CLASSES, events: CALL_EVENTS, logger }) : null;
  const callLog = new CallTracker({
    dbPath,
    ami: amiClient,
    router: routerKey(host, port),
    logger,
    defaultCountry: settings.defaultCountry,
    recordings: settings.recordings,
    sliding,
  });
  // A cluster node past its bound under fail-closed: ERROR for every call, as for a store that cannot be read.
  const gate = createFreshnessGate({ dbPath, policy: settings.freshness, logger });
  const stale = (refusal: string): RouteDecision => ({ status: 'ERROR', target: null, presentedCallerId: null, session: null, reason: refusal });
  const gated = (call: InboundCall): RouteDecision => {
    const refusal = gate.refusal();
    return refusal === undefined ? callRouter.route(call) : stale(refusal);
  };
  // A typed PIN is routed from the same replica: the same gate.
  const gatedPin = (call: InboundCall, typed: string): RouteDecision => {
    const refusal = gate.refusal();
    return refusal === undefined ? callRouter.pin(call, typed) : stale(refusal);
  };
  // With metrics on, each decision is timed and each answer counted: plain numbers, read at scrape time.
  const metrics = settings.metrics ? new RouterMetrics() : null;
  const route = metrics ? metrics.timed(gated) : gated;
  // The answer first; the call log only queues what it records (bridged calls with AMI, refusals always).
  const handler = routeCalls(
    route,
    logger,
    (call, answer, decision) => {
      metrics?.answered(answer.status);
      callLog.routed(call, answer, decision);
    },
    { pin: gatedPin, prompts },
    settings.calls,
  );
  // The metrics endpoint binds first: a taken port stops the start before the router listens.
  let metricsServer: MetricsServer | undefined;
  let figures: CachedFigures | undefined;
  if (metrics && settings.metrics) {
    figures = new CachedFigures({ reader: workerReader(dbPath), maxAgeMs: settings.metrics.storeAgeMs, logger });
    try {
      metricsServer = await startMetricsServer({ host: settings.metrics.host, port: settings.metrics.port, registry: metrics.registry, logger });
    } catch (e) {
      await figures.close();
      callRouter.close();
      gate.close();
      throw listenError(e, routerKey(settings.metrics.host, settings.metrics.port));
    }
  }
  let agi: FastAgiServer;
  try {
    const { allow, maxConnections, deadlineMs } = settings;
    agi = await startFastAgiServer({ host, port, allow, maxConnections, deadlineMs, logger, handler, fallback: FALLBACK_ANSWER });
  } catch (e) {
    await metricsServer?.close();
    await figures?.close();
    callRouter.close();
    gate.close();
    throw listenError(e, routerKey(host, port));
  }
  if (metrics && figures) {
    metrics.attach({
      agi: { connections: () => agi.connections(), counts: () => agi.counts(), maxConnections: settings.maxConnections },
      amiConnected: amiClient ? () => amiClient.loggedIn : undefined,
      figures,
      slidingPushes: () => sliding.counts,
      callShipping: shipper ? () => ({ ...shipper.counts, backlog: shipper.backlog }) : undefined,
      freshness: () => gate.freshness(),
    });
    // The first scrape finds figures already read.
    void figures.refresh();
  }
  callLog.start();
  shipper?.start();
  amiClient?.start();
  logger.info(
    {
      db: dbPath,
      defaultCountry: settings.defaultCountry ?? null,
      allowedNumberTypes: [...settings.policy.allowed].join(','),
      whenStale: settings.freshness.whenStale,
      staleAfterMs: settings.freshness.staleAfterMs,
      ami: ami ? `${ami.username}@${ami.host}:${ami.port}` : 'off',
      metrics: metricsServer ? routerKey(metricsServer.address().host, metricsServer.address().port) : 'off',
      pin: handling.pin,
      outOfSession: handling.outOfSession,
    },
    'vnum router routing from this store',
  );
  const signal = await stopSignal();
  logger.info({ signal, inFlight: agi.connections() }, 'stopping: finishing calls in flight');
  await agi
    .close(settings.drainMs)
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
    .then(() => amiClient?.stop())
    .then(() => callLog.stop())
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping AMI'))
    .then(() => shipper?.stop())
    .then(() => callSender?.close())
    .then(() => {
      if (shipper) logger.info({ shipped: shipper.counts.shipped, failures: shipper.counts.failures, backlog: shipper.backlog }, 'call log shipped from this node');
    })
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping the call shipping'))
    .then(() => slideQueue?.close())
    .then(() => slider?.close())
    .then(() => {
      const counts = sliding.counts;
      if (counts.pushed + counts.unchanged + counts.failed + counts.skipped > 0) logger.info({ slidingPushes: counts }, 'sliding pushes from this node');
    })
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping the sliding pushes'))
    .then(() => Promise.all([metricsServer?.close(), figures?.close()]))
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping metrics'))
    .finally(() => {
      callRouter.close();
      gate.close();
      logger.info('vnum router stopped');
    });
}
