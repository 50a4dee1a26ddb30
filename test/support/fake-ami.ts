/**
 * A fake Asterisk Manager Interface on a real TCP socket, answering as
 * Asterisk 22 does where the AMI client's covers depend on it:
 *
 * - a greeting line, then messages of `Name: value` lines ended by a blank line;
 * - a header is looked up by exact name, case-insensitively, first one wins
 *   (so `Event: off` is not `Events`);
 * - Login sets the session's event classes from `Events` (`on`, `off`, or a
 *   class list); without it the session gets every class; a second Login on an
 *   authenticated session is answered "Already authenticated" unread;
 * - a failed Login is answered with an error and the connection closed;
 * - before login every other action is refused;
 * - an action's response echoes its ActionID; event lists end with
 *   `EventList: Complete`.
 */
import net from 'node:net';
import { takeAmiMessages } from './raw-ami.js';

export interface ReceivedAction {
  connection: number;
  /** Header lines as received, in order. */
  headers: Array<[string, string]>;
  raw: string;
  get(name: string): string | undefined;
}

export interface FakeChannel {
  channel: string;
  uniqueid: string;
  state?: string;
}

interface Session {
  id: number;
  socket: net.Socket;
  authenticated: boolean;
  /** null: every class. */
  classes: Set<string> | null;
}

export interface FakeAmiOptions {
  username?: string;
  secret?: string;
  version?: string;
  /** Actions (lower-case names) never answered. */
  silent?: Set<string>;
  /** Answer Login after this long. */
  loginDelayMs?: number;
  /** After a Hangup that found its channel, send its Hangup event (cause 16) as Asterisk does when the channel goes. */
  hangupEvents?: boolean;
}

function header(headers: Array<[string, string]>, name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

function message(fields: Array<[string, string]>): string {
  return `${fields.map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
}

export class FakeAmi {
  readonly received: ReceivedAction[] = [];
  readonly connections: number[] = [];
  /** When each TCP connection arrived (ms). */
  readonly connectedAt: number[] = [];
  channels: FakeChannel[] = [];
  /** Accept, then close at once (Asterisk still starting, or refusing). */
  refuse = false;
  private server: net.Server | null = null;
  private readonly sessions = new Set<Session>();
  private nextSession = 0;
  port = 0;

  constructor(readonly options: FakeAmiOptions = {}) {}

  async listen(port = 0): Promise<number> {
    const server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Asterisk going away: every session closed, nothing listening. */
  async stop(): Promise<void> {
    for (const s of this.sessions) s.socket.destroy();
    this.sessions.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise((r) => server.close(() => r(undefined)));
  }

  /** Asterisk restarting: down, then listening again on the same port. */
  async restart(downMs = 0): Promise<void> {
    const port = this.port;
    await this.stop();
    if (downMs) await new Promise((r) => setTimeout(r, downMs));
    await this.listen(port);
  }

  /** Connections reset (RST) rather than closed. */
  resetAll(): void {
    for (const s of this.sessions) s.socket.resetAndDestroy();
  }

  authenticatedSessions(): number {
    return [...this.sessions].filter((s) => s.authenticated).length;
  }

  /** An event of `eventClass`, sent to every logged-in session whose classes include it. */
  event(name: string, eventClass: string, fields: Array<[string, string]> = []): void {
    const text = message([['Event', name], ['Privilege', `${eventClass},all`], ...fields]);
    for (const s of this.sessions) {
      if (!s.authenticated) continue;
      if (s.classes !== null && !s.classes.has(eventClass)) continue;
      s.socket.write(text);
    }
  }

  /** Raw bytes to every session (to cut a message in half, say). */
  write(text: string): void {
    for (const s of this.sessions) s.socket.write(text);
  }

  actions(name: string): ReceivedAction[] {
    return this.received.filter((a) => a.get('Action')?.toLowerCase() === name.toLowerCase());
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => {});
    this.connectedAt.push(Date.now());
    if (this.refuse) {
      socket.destroy();
      return;
    }
    const session: Session = { id: this.nextSession++, socket, authenticated: false, classes: null };
    this.connections.push(session.id);
    this.sessions.add(session);
    socket.on('close', () => this.sessions.delete(session));
    socket.write('Asterisk Call Manager/11.0.0\r\n');
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const taken = takeAmiMessages(buffer + chunk);
      buffer = taken.rest;
      for (const { raw, headers } of taken.messages) {
        const action: ReceivedAction = { connection: session.id, headers, raw, get: (n) => header(headers, n) };
        this.received.push(action);
        this.handle(session, action);
      }
    });
  }

  private reply(session: Session, action: ReceivedAction, fields: Array<[string, string]>): void {
    const id = action.get('ActionID');
    const out: Array<[string, string]> = [fields[0]!, ...(id === undefined ? [] : [['ActionID', id] as [string, string]]), ...fields.slice(1)];
    if (!session.socket.destroyed) session.socket.write(message(out));
  }

  private handle(session: Session, action: ReceivedAction): void {
    const name = (action.get('Action') ?? '').toLowerCase();
    if (this.options.silent?.has(name)) return;
    if (name === 'login') {
      if (session.authenticated) {
        this.reply(session, action, [['Response', 'Success'], ['Message', 'Already authenticated']]);
        return;
      }
      const ok = action.get('Username') === (this.options.username ?? 'vnum') && action.get('Secret') === (this.options.secret ?? 'secret');
      const answer = () => {
        if (!ok) {
          this.reply(session, action, [['Response', 'Error'], ['Message', 'Authentication failed']]);
          session.socket.end();
          return;
        }
        session.authenticated = true;
        const events = action.get('Events');
        session.classes = events === undefined || events === 'on' ? null : new Set(events === 'off' ? [] : events.split(','));
        this.reply(session, action, [['Response', 'Success'], ['Message', 'Authentication accepted']]);
      };
      if (this.options.loginDelayMs) setTimeout(answer, this.options.loginDelayMs);
      else answer();
      return;
    }
    if (!session.authenticated) {
      this.reply(session, action, [['Response', 'Error'], ['Message', 'Authentication Required']]);
      return;
    }
    switch (name) {
      case 'ping':
        this.reply(session, action, [['Response', 'Success'], ['Ping', 'Pong'], ['Timestamp', String(Date.now() / 1000)]]);
        return;
      case 'coresettings':
        this.reply(session, action, [['Response', 'Success'], ['AMIversion', '11.0.0'], ['AsteriskVersion', this.options.version ?? '22.10.1']]);
        return;
      case 'events': {
        const mask = action.get('EventMask') ?? 'on';
        session.classes = mask === 'on' ? null : new Set(mask === 'off' ? [] : mask.split(','));
        this.reply(session, action, [['Response', 'Success'], ['Events', mask]]);
        return;
      }
      case 'hangup': {
        const target = action.get('Channel');
        const found = this.channels.findIndex((c) => c.channel === target);
        if (found < 0) {
          this.reply(session, action, [['Response', 'Error'], ['Message', 'No such channel']]);
          return;
        }
        const [gone] = this.channels.splice(found, 1);
        this.reply(session, action, [['Response', 'Success'], ['Message', 'Channel Hungup']]);
        if (this.options.hangupEvents) {
          this.event('Hangup', 'call', [['Timestamp', (Date.now() / 1000).toFixed(6)], ['Channel', gone!.channel], ['Uniqueid', gone!.uniqueid], ['Cause', '16'], ['Cause-txt', 'Normal Clearing']]);
        }
        return;
      }
      case 'coreshowchannels': {
        this.reply(session, action, [['Response', 'Success'], ['EventList', 'start'], ['Message', 'Channels will follow']]);
        const id = action.get('ActionID') ?? '';
        for (const c of this.channels) {
          session.socket.write(
            message([['Event', 'CoreShowChannel'], ['ActionID', id], ['Channel', c.channel], ['Uniqueid', c.uniqueid], ['ChannelStateDesc', c.state ?? 'Up']]),
          );
        }
        session.socket.write(message([['Event', 'CoreShowChannelsComplete'], ['ActionID', id], ['EventList', 'Complete'], ['ListItems', String(this.channels.length)]]));
        return;
      }
      case 'logoff':
        this.reply(session, action, [['Response', 'Goodbye'], ['Message', 'Thanks for all the fish.']]);
        session.socket.end();
        return;
      default:
        this.reply(session, action, [['Response', 'Error'], ['Message', 'Invalid/unknown command']]);
    }
  }
}
