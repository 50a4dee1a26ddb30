/**
 * Asterisk's side of FastAGI, over a real loopback TCP socket: the
 * environment exactly as res_agi.c's setup_env() writes it, then replies.
 */
import net from 'node:net';

/** setup_env() order; values as a PJSIP call from a carrier would carry them. */
export const ASTERISK_ENVIRONMENT: ReadonlyArray<readonly [string, string]> = [
  ['agi_network', 'yes'],
  ['agi_network_script', 'route'],
  ['agi_request', 'agi://127.0.0.1:4573/route'],
  ['agi_channel', 'PJSIP/carrier-00000001'],
  ['agi_language', 'en'],
  ['agi_type', 'PJSIP'],
  ['agi_uniqueid', '1732526400.17'],
  ['agi_version', '22.1.0'],
  ['agi_callerid', '+447700900123'],
  ['agi_calleridname', 'Acme: Sales'],
  ['agi_callingpres', '0'],
  ['agi_callingani2', '0'],
  ['agi_callington', '0'],
  ['agi_callingtns', '0'],
  ['agi_dnid', '+447700900456'],
  ['agi_rdnis', 'unknown'],
  ['agi_context', 'vnum-inbound'],
  ['agi_extension', '+447700900456'],
  ['agi_priority', '2'],
  ['agi_enhanced', '0.0'],
  ['agi_accountcode', ''],
  ['agi_threadid', '139872662513344'],
];

/** The environment text, blank line included; `overrides` replace values in place (undefined drops the line). */
export function environmentText(overrides: Record<string, string | undefined> = {}): string {
  let text = '';
  for (const [name, value] of ASTERISK_ENVIRONMENT) {
    const v = name in overrides ? overrides[name] : value;
    if (v !== undefined) text += `${name}: ${v}\n`;
  }
  return text + '\n';
}

export interface Closed {
  /** ms from connect to close */
  afterMs: number;
  hadError: boolean;
  errorCode: string | undefined;
}

export class FakeAsterisk {
  readonly socket: net.Socket;
  /** Everything the router wrote. */
  received = '';
  private readonly connectedAt = performance.now();
  private lineWaiters: Array<(line: string) => void> = [];
  private lines: string[] = [];
  private buffered = '';
  private errorCode: string | undefined;
  readonly closed: Promise<Closed>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.received += chunk;
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const waiter = this.lineWaiters.shift();
        if (waiter) waiter(line);
        else this.lines.push(line);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.errorCode = e.code;
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (hadError) =>
        resolve({ afterMs: performance.now() - this.connectedAt, hadError, errorCode: this.errorCode }),
      );
    });
  }

  static connect(port: number, options: { host?: string; localAddress?: string } = {}): Promise<FakeAsterisk> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: options.host ?? '127.0.0.1', localAddress: options.localAddress });
      const fake = new FakeAsterisk(socket);
      socket.once('connect', () => resolve(fake));
      socket.once('error', reject);
    });
  }

  send(data: string | Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /** Write in pieces of the given sizes (cycled), one write per event-loop turn. */
  async sendInChunks(data: string, sizes: readonly number[]): Promise<void> {
    let i = 0;
    let k = 0;
    while (i < data.length) {
      const size = sizes[k++ % sizes.length]!;
      this.send(data.slice(i, i + size));
      i += size;
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The next complete line the router sent. Rejects on timeout or close. */
  nextLine(timeoutMs = 2000): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line from the router in ${timeoutMs} ms`)), timeoutMs);
      const waiter = (line: string): void => {
        clearTimeout(timer);
        resolve(line);
      };
      this.lineWaiters.push(waiter);
      void this.closed.then(() => {
        const at = this.lineWaiters.indexOf(waiter);
        if (at >= 0) {
          this.lineWaiters.splice(at, 1);
          clearTimeout(timer);
          reject(new Error('router closed the connection'));
        }
      });
    });
  }

  /** A TCP RST, as a crashing Asterisk or a dropped network path gives. */
  reset(): void {
    this.socket.resetAndDestroy();
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One whole, well-behaved call: environment, read the command, reply 200, wait for the close. */
export async function placeCall(
  port: number,
  overrides: Record<string, string | undefined> = {},
): Promise<{ command: string; closed: Closed }> {
  const asterisk = await FakeAsterisk.connect(port);
  asterisk.send(environmentText(overrides));
  const command = await asterisk.nextLine();
  asterisk.send('200 result=0\n');
  const closed = await asterisk.closed;
  return { command, closed };
}

/** A call from `caller` to `dialled` with its own Uniqueid and channel (AMI's events and Hangup name the call by them): the router's command line. */
export async function placeCallAs(port: number, caller: string, dialled: string, uniqueid: string, channel = 'PJSIP/carrier-00000042'): Promise<string> {
  const overrides = { agi_callerid: caller, agi_calleridname: 'unknown', agi_dnid: dialled, agi_extension: dialled, agi_uniqueid: uniqueid, agi_channel: channel };
  return (await placeCall(port, overrides)).command;
}

/** What a well-behaved Asterisk sends for a call from `caller` to `dialled`. */
export function callEnvironment(caller: string, dialled: string): string {
  return environmentText({ agi_callerid: caller, agi_calleridname: 'unknown', agi_dnid: dialled, agi_extension: dialled });
}
