/**
 * `vnum serve`, the composition root: the one place that wires the FastAGI
 * server (agi/), the router (src/routing), the call log (src/calls), AMI
 * (src/ami) and the store together. Everything it starts, it stops.
 */
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
import { answerFor, channelVariables, ERROR_ANSWER, type RouteAnswer } from '../routing/answer.js';
import type { RouteDecision } from '../routing/decide.js';
import { createCallRouter, type RoutedCall } from '../routing/service.js';
import { CachedFigures, workerReader } from '../metrics/cached-figures.js';
import { RouterMetrics } from '../metrics/router.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import { FRESHNESS_DEFAULTS, WHEN_STALE, type FreshnessPolicy, type WhenStale } from '../replica/freshness.js';
import { createFreshnessGate } from '../replica/gate.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { amiSettings, type AmiSettings } from './ami-settings.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, globalOptions, numberPolicy } from './context.js';
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

/**
 * The handler that routes each call: the decision, as the channel variables
 * the dialplan reads (ERROR when it fails src/routing/answer.ts's checks);
 * `routed` hears every answer (the call log).
 */
export function routeCalls(
  route: (call: InboundCall) => RouteDecision,
  logger: Logger,
  routed?: (call: InboundCall, answer: RouteAnswer) => void,
): AgiHandler {
  return (env) => {
    const call = inboundCall(env);
    const decision = route(call);
    let answer = answerFor(decision);
    if (answer === undefined) {
      const status: unknown = typeof decision === 'object' && decision !== null ? decision.status : decision;
      logger.error(
        { status: typeof status === 'string' ? status.slice(0, 64) : typeof status },
        'route returned values that fail validation: answering VNUM_STATUS=ERROR',
      );
      answer = ERROR_ANSWER;
    }
    routed?.(call, answer);
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
}

interface ServeOptions {
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
  serve
    .option('--country <XX>', 'default country for numbers without + (VNUM_DEFAULT_COUNTRY)')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .addOption(new Option('--ami-user <name>', 'AMI user: turns on the call log and hang-ups through AMI').env('VNUM_AMI_USER'))
    .addOption(new Option('--ami-host <address>', 'AMI address (default 127.0.0.1)').env('VNUM_AMI_HOST'))
    .addOption(new Option('--ami-port <port>', 'AMI port (default 5038)').env('VNUM_AMI_PORT'))
    .addOption(new Option('--ami-secret-file <file>', 'file holding the AMI secret, owner-only (or VNUM_AMI_SECRET)').env('VNUM_AMI_SECRET_FILE'))
    .action(async (options: ServeOptions, command: Command) => {
      // Every setting, the logger's included, is judged before a database is opened, created or migrated.
      const logger = createLogger();
      const settings: ServeSettings = {
        host: options.host,
        port: options.port,
        allow: options.allow,
        maxConnections: options.maxConnections,
        deadlineMs: options.deadline,
        drainMs: options.drain,
        ami: amiSettings(options),
        // Settings every command shares keep the code they have everywhere: VNUM_INVALID_COUNTRY, VNUM_INVALID_ARGUMENT.
        defaultCountry: defaultCountry(command),
        policy: numberPolicy(command),
        freshness: { whenStale: options.whenStale, staleAfterMs: options.staleAfter },
        metrics:
          options.metricsPort === null ? null : { host: options.metricsHost, port: options.metricsPort, storeAgeMs: options.metricsStoreAge },
      };
      await runRouter(resolveDbPath(globalOptions(command).db), settings, logger);
    });
}

function whenStaleSetting(name: string, text: string): WhenStale {
  if ((WHEN_STALE as readonly string[]).includes(text)) return text as WhenStale;
  throw configurationError(name, text, `one of ${WHEN_STALE.join(', ')}`);
}

/** A failure to bind (taken, not a local address, not permitted, no such host) as ours; anything else as it is. */
function listenError(e: unknown, where: string): unknown {
  const error = e as NodeJS.ErrnoException;
  if (error.syscall === 'listen' || error.syscall === 'bind' || error.syscall === 'getaddrinfo') {
    return new VnumError(ErrorCode.ListenFailed, `cannot listen on ${where}: ${error.message}`);
  }
  return e;
}

/** Wire everything, serve until SIGTERM or SIGINT, then stop it all in order. */
async function runRouter(dbPath: string, settings: ServeSettings, logger: Logger): Promise<void> {
  const { host, port, ami } = settings;
  // Open once now so a wrong path or a broken file stops the start, not the first call.
  openDb(dbPath, { mode: 'create' }).close();
  const callRouter = createCallRouter({ dbPath, defaultCountry: settings.defaultCountry, policy: settings.policy, logger });
  const amiClient = ami ? new AmiClient({ ...ami, eventClasses: CALL_EVENT_CLASSES, events: CALL_EVENTS, logger }) : null;
  const callLog = new CallTracker({ dbPath, ami: amiClient, router: routerKey(host, port), logger, defaultCountry: settings.defaultCountry });
  // A cluster node past its bound under fail-closed: ERROR for every call, as for a store that cannot be read.
  const gate = createFreshnessGate({ dbPath, policy: settings.freshness, logger });
  const gated = (call: InboundCall): RouteDecision => {
    const refusal = gate.refusal();
    if (refusal === undefined) return callRouter.route(call);
    return { status: 'ERROR', target: null, presentedCallerId: null, session: null, reason: refusal };
  };
  // With metrics on, each decision is timed and each answer counted: plain numbers, read at scrape time.
  const metrics = settings.metrics ? new RouterMetrics() : null;
  const route = metrics ? metrics.timed(gated) : gated;
  // The answer first; the call log only queues what it records (bridged calls with AMI, refusals always).
  const handler = routeCalls(route, logger, (call, answer) => {
    metrics?.answered(answer.status);
    callLog.routed(call, answer);
  });
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
    });
    // The first scrape finds figures already read.
    void figures.refresh();
  }
  callLog.start();
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
    .then(() => Promise.all([metricsServer?.close(), figures?.close()]))
    .catch((error: unknown) => logger.error({ err: error }, 'error while stopping metrics'))
    .finally(() => {
      callRouter.close();
      gate.close();
      logger.info('vnum router stopped');
    });
}
