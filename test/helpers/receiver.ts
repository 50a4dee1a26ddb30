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
}

/** What to answer a request with: a status (and optional headers), or 'hang'. */
export type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export interface Receiver {
  readonly url: string;
  readonly port: number;
  readonly received: Received[];
  /** Requests answered 2xx: what was delivered, in the order it was acknowledged. */
  delivered(): Received[];
  answer: (request: Received) => Answer;
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
      if (answer === 'hang') return;
      if (answer.status >= 200 && answer.status < 300) acknowledged.push(request);
      res.writeHead(answer.status, answer.headers).end(answer.body ?? '');
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
    down: shut,
    up: async () => void (await listen(port)),
    close: shut,
  };
  return receiver;
}

/** The order each session's events were first acknowledged in: what "in order per session" is about. */
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
