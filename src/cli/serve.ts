import { Option, type Command } from 'commander';
import { startRouter, ROUTER_DEFAULTS, type RouteFunction } from '../../agi/server.js';
import { DEFAULT_ALLOW } from '../../agi/allow-list.js';
import { AmiClient } from '../ami/client.js';
import { amiSettings, type AmiSettings } from '../ami/config.js';
import { CALL_EVENT_CLASSES, CALL_EVENTS } from '../calls/facts.js';
import { CallTracker } from '../calls/tracker.js';
import { ErrorCode, VnumError } from '../errors.js';
import { createLogger } from '../log.js';
import { createCallRouter } from '../routing/service.js';
import { boundedDuration, boundedInteger, formatMs, hostSetting, SETTING_LIMITS, tcpPort } from '../settings.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, globalOptions, numberPolicy } from './context.js';
import { allowSetting, settingName } from './settings.js';

interface ServeOptions {
  host: string;
  port: string;
  allow: string;
  maxConnections: string;
  deadline: string;
  drain: string;
  amiHost?: string;
  amiPort?: string;
  amiUser?: string;
  amiSecretFile?: string;
}

/** The router's key in router_status, as `vnum health` computes it from the same flags. */
export function routerKey(host: string, port: number | string): string {
  return `${host}:${port}`;
}

export interface ServeSettings {
  host: string;
  port: number;
  allow: string[];
  maxConnections: number;
  sessionDeadlineMs: number;
  drainMs: number;
  ami: AmiSettings | null;
  defaultCountry: string | undefined;
  policy: NumberPolicy;
}

/** Every setting of `vnum serve`, judged before anything is opened (see ../settings.ts). */
export function serveSettings(options: ServeOptions, command: Command): ServeSettings {
  const name = (key: string, flag: string, envVar?: string) => settingName(command, key, flag, envVar);
  return {
    host: hostSetting(name('host', '--host', 'VNUM_AGI_HOST'), options.host),
    port: tcpPort(name('port', '--port', 'VNUM_AGI_PORT'), options.port),
    allow: allowSetting(name('allow', '--allow', 'VNUM_AGI_ALLOW'), options.allow),
    maxConnections: boundedInteger(name('maxConnections', '--max-connections'), options.maxConnections, SETTING_LIMITS.maxConnections),
    sessionDeadlineMs: boundedDuration(name('deadline', '--deadline'), options.deadline, SETTING_LIMITS.deadlineMs),
    drainMs: boundedDuration(name('drain', '--drain'), options.drain, SETTING_LIMITS.drainMs),
    ami: amiSettings(options),
    // Settings every command shares keep the code they have everywhere: VNUM_INVALID_COUNTRY, VNUM_INVALID_ARGUMENT.
    defaultCountry: defaultCountry(command),
    policy: numberPolicy(command),
  };
}

function span(limits: { min: number; max: number }): string {
  return `${formatMs(limits.min)} to ${formatMs(limits.max)}`;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the FastAGI call router that dialplan/vnum.conf asks for each call')
    .addOption(new Option('--host <address>', 'address to listen on').env('VNUM_AGI_HOST').default(ROUTER_DEFAULTS.host))
    .addOption(new Option('--port <port>', 'TCP port').env('VNUM_AGI_PORT').default(String(ROUTER_DEFAULTS.port)))
    .addOption(
      new Option('--allow <addresses>', 'comma-separated addresses or CIDR subnets allowed to connect: your Asterisk, and where vnum health runs')
        .env('VNUM_AGI_ALLOW')
        .default(DEFAULT_ALLOW.join(',')),
    )
    .option(
      '--max-connections <n>',
      `concurrent calls being routed, ${SETTING_LIMITS.maxConnections.min} to ${SETTING_LIMITS.maxConnections.max}`,
      String(ROUTER_DEFAULTS.maxConnections),
    )
    .option('--deadline <duration>', `hard limit on one routing session, ${span(SETTING_LIMITS.deadlineMs)}`, `${ROUTER_DEFAULTS.sessionDeadlineMs}ms`)
    .option('--drain <duration>', `on SIGTERM, how long in-flight sessions may finish, ${span(SETTING_LIMITS.drainMs)}`, '2s')
    .option('--country <XX>', 'default country for numbers without + (VNUM_DEFAULT_COUNTRY)')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .addOption(new Option('--ami-user <name>', 'AMI user: turns on the call log and hang-ups through AMI').env('VNUM_AMI_USER'))
    .addOption(new Option('--ami-host <address>', 'AMI address (default 127.0.0.1)').env('VNUM_AMI_HOST'))
    .addOption(new Option('--ami-port <port>', 'AMI port (default 5038)').env('VNUM_AMI_PORT'))
    .addOption(
      new Option('--ami-secret-file <file>', 'file holding the AMI secret, owner-only (or VNUM_AMI_SECRET)').env('VNUM_AMI_SECRET_FILE'),
    )
    .action(async (options: ServeOptions, command: Command) => {
      // Judge every setting, the logger's included, before a database is opened, created or migrated.
      const logger = createLogger();
      const settings = serveSettings(options, command);
      const { host, port, ami } = settings;
      const dbPath = resolveDbPath(globalOptions(command).db);
      // Open once now so a wrong path or a broken file stops the start, not the first call.
      openDb(dbPath, { mode: 'create' }).close();
      const calls = createCallRouter({ dbPath, defaultCountry: settings.defaultCountry, policy: settings.policy, logger });
      const amiClient = ami ? new AmiClient({ ...ami, eventClasses: CALL_EVENT_CLASSES, events: CALL_EVENTS, logger }) : null;
      const tracker = new CallTracker({ dbPath, ami: amiClient, router: routerKey(host, port), logger, defaultCountry: settings.defaultCountry });
      // The answer first; the tracker only queues what it records (bridged calls with AMI, refusals always).
      const route: RouteFunction = (call) => {
        const answer = calls.route(call);
        tracker.routed(call, answer);
        return answer;
      };
      let router;
      try {
        const { allow, maxConnections, sessionDeadlineMs } = settings;
        router = await startRouter({ host, port, allow, maxConnections, sessionDeadlineMs, logger, route });
      } catch (e) {
        calls.close();
        const error = e as NodeJS.ErrnoException;
        // Binding failed (taken, not a local address, not permitted, no such host); anything else is ours.
        if (error.syscall === 'listen' || error.syscall === 'bind' || error.syscall === 'getaddrinfo') {
          throw new VnumError(ErrorCode.ListenFailed, `cannot listen on ${routerKey(host, port)}: ${error.message}`);
        }
        throw e;
      }
      tracker.start();
      amiClient?.start();
      logger.info(
        {
          db: dbPath,
          defaultCountry: settings.defaultCountry ?? null,
          allowedNumberTypes: [...settings.policy.allowed].join(','),
          ami: ami ? `${ami.username}@${ami.host}:${ami.port}` : 'off',
        },
        'vnum router routing from this store',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal, inFlight: router.connections() }, 'stopping: finishing calls in flight');
          router
            .close(settings.drainMs)
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
            .then(() => amiClient?.stop())
            .then(() => tracker.stop())
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping AMI'))
            .finally(() => {
              calls.close();
              logger.info('vnum router stopped');
              resolve();
            });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
