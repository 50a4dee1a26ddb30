import http from 'node:http';
import https from 'node:https';
import { guardedLookup, refusedAddress, refusedAddressError } from './address.js';

/**
 * One webhook POST, on node:http(s) so every connection's address passes the
 * deliverer's own check (./address.ts). No redirect is followed (a 3xx is a
 * failure like any other non-2xx: following it would let the receiver point
 * vnum anywhere). The whole exchange, connect to the last byte of the
 * answer, has one time limit; the answer's body is read up to 64 KiB and
 * its start kept for the operator.
 */

export interface PostOptions {
  timeoutMs: number;
  allowLocal: boolean;
  agent: http.Agent;
}

export interface PostResult {
  status: number;
  /** The start of the answer's body, printable characters only. */
  excerpt: string;
}

const MAX_ANSWER_BYTES = 64 * 1024;
const EXCERPT_CHARS = 200;

/** `[::1]` -> `::1`: URL keeps IPv6 literals in brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** Keep-alive connections, at most `sockets` at once: one per event in flight. */
export function postAgent(url: URL, sockets: number, allowLocal: boolean): http.Agent {
  const options = { keepAlive: true, maxSockets: sockets, lookup: guardedLookup(allowLocal) } as http.AgentOptions;
  return url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
}

export function post(url: URL, body: string, headers: Record<string, string>, options: PostOptions): Promise<PostResult> {
  const literal = refusedAddress(hostOf(url), options.allowLocal);
  if (literal) return Promise.reject(refusedAddressError(literal));
  const started = Date.now();
  return attempt(url, body, headers, options, options.timeoutMs).catch((error: StaleSocketError | Error) => {
    // A kept-alive connection the receiver closed as the request went out: once more, on a new one (Node's advice).
    if (!(error instanceof StaleSocketError)) throw error;
    return attempt(url, body, headers, options, Math.max(1, options.timeoutMs - (Date.now() - started)));
  });
}

/** The receiver closed a reused keep-alive connection before answering anything. */
class StaleSocketError extends Error {}

function attempt(url: URL, body: string, headers: Record<string, string>, options: PostOptions, timeoutMs: number): Promise<PostResult> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? https.request : http.request;
    let settled = false;
    let answered = false;
    const finish = (error: Error | null, result?: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(result!);
    };
    const request = send(url, {
      method: 'POST',
      agent: options.agent,
      headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) },
    });
    const timer = setTimeout(() => {
      const error = new Error(`no answer within ${options.timeoutMs} ms`);
      request.destroy(error);
      finish(error);
    }, timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) => {
      const stale = request.reusedSocket && !answered && (error.code === 'ECONNRESET' || error.code === 'EPIPE');
      finish(stale ? new StaleSocketError(error.message) : error);
    });
    request.on('response', (response) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        const excerpt = Buffer.concat(chunks).toString('utf8').slice(0, EXCERPT_CHARS).replace(/[^\x20-\x7e]+/g, ' ').trim();
        finish(null, { status: response.statusCode ?? 0, excerpt });
      };
      response.on('data', (chunk: Buffer) => {
        if (size < EXCERPT_CHARS * 4) chunks.push(chunk);
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          // Enough: the status is what counts; do not read an endless answer.
          done();
          response.destroy();
        }
      });
      response.on('end', done);
      // Cut off before its end (Node says "aborted"): not an answer to count on; sent again.
      response.on('error', (error) => finish(new Error(`the answer was cut off (${error.message})`)));
    });
    request.end(body);
  });
}
