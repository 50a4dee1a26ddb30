import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { verifySignature } from '../../src/webhooks/signature.js';

/**
 * A real webhook receiver for tests: an HTTP server on loopback that records
 * every request (headers, raw body, when) and answers as the test says:
 * 2xx, an error status, a redirect, never (a hang), or not at all (down:
 * the port closed, connections refused).
 */
export interface Received {
  at: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The body's event, parsed. */
  event: { id: string; type: string; session: string; sequence: number; occurredAt: string; data: Record<string, any> };
  /** The signature checked against the receiver's secrets. */
  verified: boolean;
  /** What the receiver answered: a status, or 'hang'. */
  answered?: number | 'hang';
}

/** What to answer a request with: a status (and optional headers, body, and a wait before answering), or 'hang'. */
export type Answer = { status: number; headers?: Record<string, string>; body?: string; delayMs?: number } | 'hang';

export interface Receiver {
  readonly url: string;
  readonly port: number;
  readonly received: Received[];
  /** Requests answered 2xx: what was delivered, in the order it was acknowledged. */
  delivered(): Received[];
  answer: (request: Received) => Answer;
  /** Requests received and not answered yet, on connections still open. */
  open(): number;
  /** Stop listening (connections refused); `up()` listens again on the same port. */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(options: { secrets: string[]; port?: number; host?: string }): Promise<Receiver> {
  const host = options.host ?? '127.0.0.1';
  const received: Received[] = [];
  const acknowledged: Received[] = [];
  const sockets = new Set<Socket>();
  const waiting = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let event: Received['event'];
      try {
        event = JSON.parse(body);
      } catch {
        event = { id: '', type: '', session: '', sequence: -1, occurredAt: '', data: {} };
      }
      const signature = req.headers['vnum-signature'];
      const request: Received = {
        at: Date.now(),
        path: req.url ?? '',
        headers: req.headers,
        body,
        event,
        verified: verifySignature(typeof signature === 'string' ? signature : undefined, body, options.secrets, Math.floor(Date.now() / 1000)).ok,
      };
      received.push(request);
      const answer = receiver.answer(request);
      if (answer === 'hang') {
        request.answered = 'hang';
        return;
      }
      const send = () => {
        waiting.delete(res);
        if (res.destroyed) return; // the sender went away while we waited: it never saw an answer
        request.answered = answer.status;
        if (answer.status >= 200 && answer.status < 300) acknowledged.push(request);
        res.writeHead(answer.status, answer.headers).end(answer.body ?? '');
      };
      waiting.add(res);
      res.on('close', () => waiting.delete(res));
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const port = await listen(options.port ?? 0);
  const shut = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  const receiver: Receiver = {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/vnum-events`,
    port,
    received,
    delivered: () => acknowledged,
    answer: () => ({ status: 200 }),
    open: () => waiting.size,
    down: shut,
    up: async () => void (await listen(port)),
    close: shut,
  };
  return receiver;
}

/** Each session's events in the order the receiver first saw each one (later copies left out). */
export function firstDeliveries(received: readonly Received[]): Map<string, Received[]> {
  const seen = new Set<string>();
  const bySession = new Map<string, Received[]>();
  for (const r of received) {
    if (seen.has(r.event.id)) continue;
    seen.add(r.event.id);
    const list = bySession.get(r.event.session) ?? [];
    list.push(r);
    bySession.set(r.event.session, list);
  }
  return bySession;
}

/**
 * What "in order per session" means at the receiver: within a session, an
 * event is first received only after every earlier event of the session
 * (by sequence) was answered 2xx. Returns the violations, as text.
 */
export function orderViolations(received: readonly Received[]): string[] {
  const acked = new Set<string>();
  const seenIds = new Set<string>();
  const violations: string[] = [];
  for (const r of received) {
    const { id, session, sequence } = r.event;
    if (!seenIds.has(id)) {
      seenIds.add(id);
      // Every earlier event of the session first received must have been acknowledged already.
      for (const other of received) {
        if (other === r) break;
        if (other.event.session === session && other.event.sequence < sequence && !acked.has(other.event.id)) {
          violations.push(`${session}: ${r.event.type} (#${sequence}) received before ${other.event.type} (#${other.event.sequence}) was acknowledged`);
        }
        if (other.event.session === session && other.event.sequence > sequence) {
          violations.push(`${session}: ${r.event.type} (#${sequence}) first received after #${other.event.sequence}`);
        }
      }
    }
    if (typeof r.answered === 'number' && r.answered >= 200 && r.answered < 300) acked.add(id);
  }
  return violations;
}
