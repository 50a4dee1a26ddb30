import { Option, type Command } from 'commander';
import { createRequire } from 'node:module';
import { ErrorCode, VnumError } from '../errors.js';
import { createLogger } from '../log.js';
import { reportSessionEnds } from '../session/events.js';
import { findSession } from '../session/sessions.js';
import { openDb, resolveDbPath, writeTransaction } from '../store/db.js';
import { WebhookDeliverer } from '../webhooks/deliverer.js';
import { sqliteDeliveryStore } from '../webhooks/delivery-store.js';
import { setRecording, type CounterName } from '../webhooks/outbox.js';
import { checkReceiver, WEBHOOK_DEFAULTS, WEBHOOK_LIMITS, webhookSettings, type WebhookFlags } from './webhook-settings.js';
import { checkEventId, discardParked, retryParked, webhookStatus, type WebhookStatus } from '../webhooks/status.js';
import { addSetting, formatMs, hostSetting, portOrOff, span } from './settings.js';
import { listenError } from './failure.js';
import { commandName, globalOptions, withDb } from './context.js';
import { refuseReplicaWrites } from '../replica/read-only.js';
import { isoTime } from '../time.js';
import { printJson, printLine, printTable, shortTime } from './output.js';
import { stopSignal } from './stop-signal.js';
import { addAuthoritySetting, authorityName, givenAuthority } from './authority.js';
import type { PgTarget } from '../replica/stream.js';
import type { PgStore } from '../authority/pg-store.js';
import type { DeliveryStore } from '../webhooks/delivery-store.js';
import { DelivererMetrics } from '../metrics/webhooks.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

/** The counters as the JSON names them. */
const COUNTER_JSON: Record<CounterName, string> = {
  delivered: 'delivered',
  failed_attempts: 'failedAttempts',
  parked: 'parked',
  discarded: 'discarded',
  refusals_dropped: 'refusalsDropped',
  refused_no_session: 'refusedNoSession',
  refused_invalid_caller: 'refusedInvalidCaller',
};

/** The documented JSON shape of `vnum webhooks status --json` (README, "Webhooks"). */
export function statusJson(status: WebhookStatus) {
  return {
    recording: { on: status.recording.on, since: isoTime(status.recording.since) },
    events: status.events,
    backlog: status.backlog,
    oldestUndeliveredAt: isoTime(status.oldestUndeliveredAt),
    counters: Object.fromEntries(Object.entries(status.counters).map(([name, value]) => [COUNTER_JSON[name as CounterName], value])),
    deliverers: status.deliverers.map((d) => ({
      instance: d.instance,
      url: d.url,
      pid: d.pid,
      startedAt: isoTime(d.startedAt),
      updatedAt: isoTime(d.updatedAt),
      inFlight: d.inFlight,
      lastError: d.lastError,
      stopped: d.stopped,
    })),
    parked: status.parked.map((p) => ({ ...p, firstFailedAt: isoTime(p.firstFailedAt), parkedAt: isoTime(p.parkedAt) })),
  };
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function printStatus(status: WebhookStatus, now: number): void {
  const { events, counters: c } = status;
  printLine(`recording   ${status.recording.on ? `on since ${shortTime(status.recording.since)}` : 'off (vnum webhooks deliver turns it on)'}`);
  const live = status.deliverers.filter((d) => !d.stopped && now - d.updatedAt < 60_000);
  if (live.length === 0) printLine('deliverer   none running');
  for (const d of live) {
    printLine(`deliverer   ${d.url} (${d.instance}), seen ${ago(now - d.updatedAt)}, ${d.inFlight} in flight${d.lastError ? `; last error: ${d.lastError}` : ''}`);
  }
  printLine(
    `backlog     ${status.backlog}: ${events.pending} pending (${events.retrying} being retried), ` +
      `${events.queued} queued behind earlier events of their session (${events.blocked} behind a parked one), ${events.parked} parked`,
  );
  if (status.oldestUndeliveredAt !== null) printLine(`oldest      recorded ${shortTime(status.oldestUndeliveredAt)} (${ago(now - status.oldestUndeliveredAt)})`);
  printLine(`totals      ${c.delivered} delivered, ${c.failed_attempts} failed attempts, ${c.parked} parked, ${c.discarded} discarded`);
  printLine(
    `refused     ${c.refusals_dropped} call.refused over the flood bounds (not sent); without a session (never sent): ` +
      `${c.refused_no_session} no session, ${c.refused_invalid_caller} caller withheld or invalid`,
  );
  if (status.parked.length > 0) {
    printLine('');
    printTable(
      ['PARKED EVENT', 'TYPE', 'SESSION', 'ATTEMPTS', 'PARKED AT', 'LAST ERROR'],
      status.parked.map((p) => [p.id, p.type, p.session, p.attempts, shortTime(p.parkedAt), p.lastError]),
    );
  }
}

interface DeliverOptions extends WebhookFlags {
  allowLocal?: boolean;
  realNumbers?: boolean;
  metricsPort: number | null;
  metricsHost: string;
}

/** How often `vnum webhooks deliver --authority --metrics-port` reads the outbox's figures for /metrics. */
const FIGURES_EVERY_MS = 5_000;

/**
 * Cluster mode: `work` on the authority's outbox (PostgreSQL), through a
 * store of its own that is closed afterwards. `pg` is loaded only here.
 */
async function onOutbox<T>(target: PgTarget, command: Command, work: (store: PgStore) => Promise<T>, connections = 1): Promise<T> {
  const { PgStore } = await import('../authority/pg-store.js');
  const store = new PgStore(target, { connections, applicationName: commandName(command) });
  try {
    await store.checkSchema();
    return await work(store);
  } finally {
    await store.close();
  }
}

function eventIds(ids: string[], all: boolean | undefined): string[] | 'all' {
  if (all && ids.length > 0) throw new VnumError(ErrorCode.Usage, 'give event ids or --all, not both');
  if (!all && ids.length === 0) throw new VnumError(ErrorCode.Usage, 'name the parked events (vnum webhooks status lists them), or --all');
  return all ? 'all' : ids;
}

export function registerWebhooks(program: Command): void {
  const webhooks = program.command('webhooks').description('signed webhooks to the order system: deliver them, see the outbox, retry parked events');

  const deliver = addAuthoritySetting(webhooks.command('deliver'));
  addSetting(deliver, {
    flags: '--metrics-port <port>',
    description: "with --authority: serve the outbox's Prometheus metrics at http://<metrics-host>:<port>/metrics (on a single box vnum serve --metrics-port has them), or off",
    judge: portOrOff,
    default: { value: null, shown: 'off' },
  });
  addSetting(deliver, {
    flags: '--metrics-host <address>',
    description: 'address the metrics endpoint listens on (keep it on loopback or a monitoring network)',
    judge: hostSetting,
    default: { value: '127.0.0.1' },
  });
  deliver
    .description('send the outbox\'s events to the receiver, signed, in order per session, retried (turns recording on)')
    .addOption(new Option('--url <url>', 'the receiver: an http(s) URL on another host').env('VNUM_WEBHOOK_URL'))
    .addOption(new Option('--secret-file <file>', 'owner-only file with the signing secret (two lines while rotating), or VNUM_WEBHOOK_SECRET').env('VNUM_WEBHOOK_SECRET_FILE'))
    .addOption(new Option('--timeout <duration>', `one POST, connect to answer, ${span(WEBHOOK_LIMITS.timeoutMs)} (default ${formatMs(WEBHOOK_DEFAULTS.timeoutMs)})`).env('VNUM_WEBHOOK_TIMEOUT'))
    .addOption(new Option('--concurrency <n>', `sessions sent at once, 1 to 256 (default ${WEBHOOK_DEFAULTS.concurrency})`).env('VNUM_WEBHOOK_CONCURRENCY'))
    .addOption(new Option('--retry-for <duration>', `how long a failing event is retried before it is parked, ${span(WEBHOOK_LIMITS.retryForMs)} (default 3d)`).env('VNUM_WEBHOOK_RETRY_FOR'))
    .addOption(new Option('--backoff-min <duration>', 'the first retry\'s wait (default 10s); each next one doubles').env('VNUM_WEBHOOK_BACKOFF_MIN'))
    .addOption(new Option('--backoff-max <duration>', 'the longest wait between retries (default 1h)').env('VNUM_WEBHOOK_BACKOFF_MAX'))
    .option('--allow-local', 'allow a receiver on this host (VNUM_WEBHOOK_ALLOW_LOCAL=on)')
    .option('--real-numbers', 'add the parties\' real numbers to the payloads (VNUM_WEBHOOK_REAL_NUMBERS=on)')
    .action(async (options: DeliverOptions, command: Command) => {
      const logger = createLogger();
      // Flags only: the environment is webhookSettings' to read, under its own names.
      const flag = (key: keyof WebhookFlags) => (command.getOptionValueSource(key) === 'cli' ? (options[key] as string | undefined) : undefined);
      const settings = webhookSettings(
        {
          url: flag('url'),
          secretFile: flag('secretFile'),
          timeout: flag('timeout'),
          concurrency: flag('concurrency'),
          retryFor: flag('retryFor'),
          backoffMin: flag('backoffMin'),
          backoffMax: flag('backoffMax'),
          allowLocal: options.allowLocal,
          realNumbers: options.realNumbers,
        },
        process.env,
      );
      if (!settings) throw new VnumError(ErrorCode.Configuration, 'no receiver: set VNUM_WEBHOOK_URL (or --url) and a signing secret');
      const target = givenAuthority(command);
      if (options.metricsPort !== null && target === undefined) {
        throw new VnumError(ErrorCode.Configuration, '--metrics-port is for --authority (cluster mode): on a single box vnum serve --metrics-port exports the outbox\'s metrics');
      }
      const metrics = options.metricsPort === null ? null : { host: options.metricsHost, port: options.metricsPort };
      const warning = await checkReceiver(settings, command.getOptionValueSource('url') === 'cli' ? '--url' : 'VNUM_WEBHOOK_URL');
      if (target !== undefined) {
        await deliverFromAuthority(target, command, settings, logger, warning, metrics);
        return;
      }
      const dbPath = resolveDbPath(globalOptions(command).db);
      const db = openDb(dbPath, { mode: 'write' });
      try {
        refuseReplicaWrites(db, dbPath, commandName(command));
      } catch (e) {
        db.close();
        throw e;
      }
      const deliverer = new WebhookDeliverer({
        store: sqliteDeliveryStore(db),
        settings,
        logger,
        tick: (now) => void reportSessionEnds(db, now, (id) => findSession(db, id, now)),
        userAgent: `vnum-webhooks/${version}`,
      });
      if (warning) logger.warn(warning);
      if (settings.url.protocol === 'http:') logger.warn({ url: settings.url.origin }, 'the receiver is plain http: payloads and signatures cross the network readable; use https beyond a network you own');
      await deliverer.start();
      logger.info(
        { db: dbPath, url: settings.url.href, concurrency: settings.concurrency, realNumbers: settings.realNumbers, secrets: settings.secrets.length },
        'vnum webhooks delivering from this store',
      );
      const signal = await stopSignal();
      logger.info({ signal, inFlight: deliverer.status().inFlight }, 'stopping: finishing deliveries in flight');
      try {
        await deliverer.stop();
      } catch (error) {
        logger.error({ err: error }, 'error while stopping');
      } finally {
        db.close();
        logger.info('vnum webhooks stopped');
      }
    });

  addAuthoritySetting(webhooks.command('status'))
    .description('the outbox: recording, deliverers, backlog, parked events, totals')
    .option('--json', 'JSON (README, "Webhooks")')
    .action(async (options: { json?: boolean }, command: Command) => {
      const target = givenAuthority(command);
      const status =
        target === undefined
          ? withDb(command, (db) => webhookStatus(db), 'read')
          : await onOutbox(target, command, async (store) => (await import('../authority/pg-webhook-status.js')).pgWebhookStatus(store));
      if (options.json) printJson(statusJson(status));
      else printStatus(status, Date.now());
    });

  const parkedActions = [
    ['retry', 'retried', 'due again', 'send parked events again, with a fresh retry window; their sessions\' later events follow', retryParked, 'pgRetryParked'],
    ['discard', 'discarded', 'discarded', 'give up on parked events: never sent; their sessions\' later events follow', discardParked, 'pgDiscardParked'],
  ] as const;
  for (const [name, key, done, description, act, onPg] of parkedActions) {
    addAuthoritySetting(webhooks.command(name))
      .description(description)
      .argument('[event-ids...]', 'parked events (vnum webhooks status lists them)')
      .option('--all', 'every parked event')
      .option('--json', `JSON: {"${key}": [ids]}`)
      .action(async (ids: string[], options: { all?: boolean; json?: boolean }, command: Command) => {
        const which = eventIds(ids, options.all);
        const target = givenAuthority(command);
        // On the authority, a malformed id is refused before connecting.
        if (target !== undefined && which !== 'all') for (const id of which) checkEventId(id);
        const changed =
          target === undefined
            ? withDb(command, (db) => act(db, which, Date.now()), 'write')
            : await onOutbox(target, command, async (store) => (await import('../authority/pg-webhook-status.js'))[onPg](store, which, Date.now()));
        if (options.json) printJson({ [key]: changed });
        else printLine(`${changed.length} parked event${changed.length === 1 ? '' : 's'} ${done}`);
      });
  }

  for (const [name, on] of [['enable', true], ['disable', false]] as const) {
    addAuthoritySetting(webhooks.command(name))
      .description(
        on
          ? 'record events from now on, before any deliverer runs (vnum webhooks deliver also does it)'
          : 'stop recording events (the backlog stays; a deliverer started later turns recording on again)',
      )
      .action(async (_options: unknown, command: Command) => {
        const target = givenAuthority(command);
        if (target === undefined) withDb(command, (db) => writeTransaction(db, () => setRecording(db, on, Date.now())), 'write');
        else {
          const { setPgRecording } = await import('../webhooks/pg-outbox.js');
          await onOutbox(target, command, (store) => store.transaction((c) => setPgRecording(c, on, Date.now())));
        }
        printLine(`webhook events ${on ? 'recorded from now on' : 'no longer recorded'}`);
      });
  }
}

/**
 * `vnum webhooks deliver --authority`: the same deliverer on the authority's
 * outbox (cluster mode). Any number may run, on any hosts: claims are leases
 * taken with FOR UPDATE SKIP LOCKED (src/authority/pg-delivery-store.ts), and
 * each runs the session.ended sweep, which one transaction at a time does
 * (src/authority/pg-webhooks.ts).
 */
async function deliverFromAuthority(
  target: PgTarget,
  command: Command,
  settings: NonNullable<ReturnType<typeof webhookSettings>>,
  logger: ReturnType<typeof createLogger>,
  warning: string | undefined,
  metrics: { host: string; port: number } | null,
): Promise<void> {
  const { PgStore } = await import('../authority/pg-store.js');
  const { pgDeliveryStore } = await import('../authority/pg-delivery-store.js');
  const { reportPgSessionEnds } = await import('../authority/pg-webhooks.js');
  const { pgWebhookFigures } = await import('../authority/pg-webhook-status.js');
  // The metrics endpoint binds first: a taken port stops the start before anything is recorded.
  let metricsServer: MetricsServer | undefined;
  const exported = metrics ? new DelivererMetrics() : undefined;
  if (exported && metrics) {
    try {
      metricsServer = await startMetricsServer({ host: metrics.host, port: metrics.port, registry: exported.registry, logger });
    } catch (e) {
      throw listenError(e, `${metrics.host}:${metrics.port}`);
    }
  }
  // Deliveries record their outcome on connections of their own; the claims and the sweep share the rest.
  const store = new PgStore(target, { connections: Math.min(settings.concurrency, 16) + 2, applicationName: commandName(command) });
  let deliverer: WebhookDeliverer | undefined;
  try {
    await store.checkSchema();
    const outbox: DeliveryStore = pgDeliveryStore(store);
    deliverer = new WebhookDeliverer({
      store: outbox,
      settings,
      logger,
      tick: (now) => reportPgSessionEnds(store, now),
      userAgent: `vnum-webhooks/${version}`,
    });
    if (warning) logger.warn(warning);
    if (settings.url.protocol === 'http:') logger.warn({ url: settings.url.origin }, 'the receiver is plain http: payloads and signatures cross the network readable; use https beyond a network you own');
    await deliverer.start();
  } catch (error) {
    await metricsServer?.close();
    await store.close();
    throw error;
  }
  // The figures for /metrics, read in the background: a scrape never waits on PostgreSQL.
  let figuresTimer: ReturnType<typeof setInterval> | undefined;
  if (exported) {
    const read = () =>
      pgWebhookFigures(store).then(
        (figures) => exported.update(figures),
        (error: unknown) => logger.warn({ err: error }, 'cannot read the outbox figures for /metrics (tried again in 5 s)'),
      );
    void read();
    figuresTimer = setInterval(() => void read(), FIGURES_EVERY_MS);
  }
  logger.info(
    {
      authority: authorityName(target),
      metrics: metricsServer ? `${metricsServer.address().host}:${metricsServer.address().port}` : 'off',
      url: settings.url.href,
      concurrency: settings.concurrency,
      realNumbers: settings.realNumbers,
      secrets: settings.secrets.length,
    },
    'vnum webhooks delivering from the authority',
  );
  const signal = await stopSignal();
  logger.info({ signal, inFlight: deliverer.status().inFlight }, 'stopping: finishing deliveries in flight');
  clearInterval(figuresTimer);
  try {
    await deliverer.stop();
  } catch (error) {
    logger.error({ err: error }, 'error while stopping');
  } finally {
    await metricsServer?.close();
    await store.close();
    logger.info('vnum webhooks stopped');
  }
}
