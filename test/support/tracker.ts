import { AmiClient } from '../../src/ami/client.js';
import { CALL_EVENT_CLASSES, CALL_EVENTS } from '../../src/calls/facts.js';
import { CallTracker, type CallTrackerOptions } from '../../src/calls/tracker.js';
import { FakeAmi, type FakeAmiOptions } from './fake-ami.js';
import { captureLog } from './log.js';
import { until } from './wait.js';

/**
 * `vnum serve`'s call tracker on a database file, logged in to a fake AMI
 * (./fake-ami.ts) with short timers (a hang-up check every 30 ms), and past
 * its reconcile: the tracker lists the channels with CoreShowChannels at
 * login and marks open calls Asterisk does not have as lost, so a call routed
 * before that reply is applied would be marked lost. A Ping on the same
 * connection is answered after it, and the write it queued runs on the next
 * turn. `stop` ends the client, the tracker and the fake.
 */
export async function trackerOnFakeAmi(
  dbPath: string,
  options: { fake?: FakeAmiOptions; tracker?: Partial<CallTrackerOptions> } = {},
): Promise<{ fake: FakeAmi; ami: AmiClient; tracker: CallTracker; log: ReturnType<typeof captureLog>; stop: () => Promise<void> }> {
  const fake = new FakeAmi(options.fake);
  await fake.listen();
  const log = captureLog();
  const ami = new AmiClient({
    host: '127.0.0.1',
    port: fake.port,
    username: 'vnum',
    secret: 'secret',
    eventClasses: CALL_EVENT_CLASSES,
    events: CALL_EVENTS,
    logger: log.logger,
    actionTimeoutMs: 300,
    reconnectInitialMs: 20,
    pingIntervalMs: 0,
  });
  const tracker = new CallTracker({ dbPath, ami, router: '127.0.0.1:4573', logger: log.logger, hangupCheckMs: 30, heartbeatMs: 50, ...options.tracker });
  tracker.start();
  ami.start();
  const stop = async (): Promise<void> => {
    await ami.stop();
    await tracker.stop();
    await fake.stop();
  };
  try {
    await until(() => ami.loggedIn, 3_000);
    await until(() => fake.actions('coreshowchannels').length > 0, 3_000);
    await ami.action('Ping', {}, 3_000);
    await new Promise((r) => setImmediate(r));
  } catch (error) {
    await stop();
    throw error;
  }
  return { fake, ami, tracker, log, stop };
}
