/**
 * The HTTP load generator for bench/api.ts: the order system's side of the
 * API, in a child process of its own (forked with an IPC channel). A closed
 * loop of `concurrency` keep-alive connections, each sending its next
 * request as soon as the last answer is whole. HTTP/1.1 is written and read
 * by hand (requests prebuilt as bytes, answers read to their Content-Length),
 * so the client costs far less CPU per request than the server it drives.
 *
 * Kinds of load:
 *   create   POST /v1/sessions: new orders, a seeded agent and (mostly) a new customer
 *   read     GET /v1/sessions/{id} of a random seeded session
 *   bad-key  GET /v1/stats with a key that does not exist (a flood of bad keys)
 *
 * Messages: the parent sends `{ type: 'run', ... }` and gets back an
 * `HttpRunResult`; `{ type: 'exit' }` ends the process.
 */
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { latencySummary } from './benchmark.js';
import { agentNumber, customerNumber, orderId, prng } from './seed.js';

export interface HttpRunRequest {
  type: 'run';
  port: number;
  durationMs: number;
  concurrency: number;
  kind: 'create' | 'read' | 'bad-key';
  /** The API key sent with every request. */
  key: string;
  /** create: session ids are `<prefix>-<n>`. */
  prefix: string;
  /** The seeded store: its sessions (read), agents and customers (create). */
  sessions: number;
  agents: number;
  /** create: new customers are numbered from here on (past every one used before). */
  customersFrom: number;
  seed: number;
}

export interface HttpRunResult {
  type: 'result';
  /** Answers received inside the window. */
  requests: number;
  windowMs: number;
  perSecond: number;
  /** Request written to answer read, µs. */
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
  /** Answers by HTTP status. */
  statuses: Record<string, number>;
  failures: number;
  failureSamples: string[];
  /** create: how many customers this run used (the next run starts past them). */
  customersUsed: number;
}

function requestBytes(method: string, path: string, key: string, body?: string): Buffer {
  const head =
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
    (body === undefined ? '\r\n' : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  return Buffer.from(head, 'latin1');
}

async function run(request: HttpRunRequest): Promise<HttpRunResult> {
  const random = prng(request.seed);
  let n = 0;
  let newCustomers = 0;
  const next = (): Buffer => {
    const i = n++;
    switch (request.kind) {
      case 'create': {
        const customer = random() < 0.2 ? Math.floor(random() * request.customersFrom) : request.customersFrom + newCustomers++;
        const body = JSON.stringify({
          id: `${request.prefix}-${i}`,
          parties: [{ number: customerNumber(customer) }, { number: agentNumber(Math.floor(random() * request.agents)) }],
        });
        return requestBytes('POST', '/v1/sessions', request.key, body);
      }
      case 'read':
        return requestBytes('GET', `/v1/sessions/${orderId(1 + Math.floor(random() * request.sessions))}`, request.key);
      case 'bad-key':
        return requestBytes('GET', '/v1/stats', `vnum_${(i % 65536).toString(16).padStart(16, '0')}_${'A'.repeat(43)}`);
    }
  };

  const latencies = new Float64Array(Math.max(1024, Math.ceil((request.durationMs / 1000) * 50_000)));
  let counted = 0;
  let requests = 0;
  let failures = 0;
  const failureSamples: string[] = [];
  const statuses: Record<string, number> = {};
  const windowEnd = performance.now() + request.durationMs;
  const fail = (why: string): void => {
    failures++;
    if (failureSamples.length < 5) failureSamples.push(why);
  };

  const connection = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect(request.port, '127.0.0.1');
      socket.setNoDelay(true);
      let buffered: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      const send = (): void => {
        if (performance.now() >= windowEnd) {
          socket.end();
          return;
        }
        sentAt = performance.now();
        socket.write(next());
      };
      socket.on('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        for (;;) {
          const headEnd = buffered.indexOf('\r\n\r\n');
          if (headEnd < 0) return;
          const head = buffered.subarray(0, headEnd).toString('latin1');
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < headEnd + 4 + length) return;
          buffered = buffered.subarray(headEnd + 4 + length);
          const status = head.slice(9, 12);
          const at = performance.now();
          if (at <= windowEnd) {
            requests++;
            statuses[status] = (statuses[status] ?? 0) + 1;
            if (counted < latencies.length) latencies[counted++] = (at - sentAt) * 1000;
          }
          if (/\r\nconnection: *close/i.test(head)) {
            socket.end();
            return;
          }
          send();
        }
      });
      socket.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
      socket.on('close', () => resolve());
    });

  // A connection the server closes (it may, e.g. after a 4xx on a body it did not read) is replaced while the window lasts.
  const loop = async (): Promise<void> => {
    while (performance.now() < windowEnd) await connection();
  };
  await Promise.all(Array.from({ length: request.concurrency }, loop));
  const sorted = latencies.subarray(0, counted).sort();
  return {
    type: 'result',
    requests,
    windowMs: request.durationMs,
    perSecond: requests / (request.durationMs / 1000),
    latencyUs: latencySummary(sorted),
    statuses,
    failures,
    failureSamples,
    customersUsed: newCustomers,
  };
}

// Forked by bench/api.ts.
if (process.send !== undefined && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.on('message', (message: HttpRunRequest | { type: 'exit' }) => {
    if (message.type === 'exit') {
      process.disconnect();
      return;
    }
    run(message).then(
      (result) => process.send!(result),
      (error: unknown) => process.send!({ type: 'error', message: String(error) }),
    );
  });
  process.send({ type: 'ready' });
}
