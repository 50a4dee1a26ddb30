import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A body refused before it was read (over the operation's limit, or one its
 * parser gave up on): fastify answers with `Connection: close` while the
 * client may still be sending it. Closing then leaves unread bytes in the
 * kernel, which resets the connection, and a client mid-upload may lose the
 * answer to EPIPE or ECONNRESET (measured: fetch lost the 413 for a 4 MiB CSV
 * in 2 of 4 runs on a loaded machine). So the connection lingers instead: the
 * rest of the body is read and dropped, and the connection stays open for the
 * client's next request, unless the rest is over LINGER.bytes or takes over
 * LINGER.ms, when it is cut (a client that never stops sending holds nothing).
 */
export const LINGER = Object.freeze({ bytes: 16 * 1024 * 1024, ms: 5_000 });

/** From an onSend hook: linger on a refused body instead of closing at once. */
export function lingerOnRefusedBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  if (raw.complete || reply.getHeader('connection') !== 'close') return;
  reply.removeHeader('connection');
  let dropped = 0;
  const cut = (): void => {
    clearTimeout(timer);
    raw.socket.destroy();
  };
  const timer = setTimeout(cut, LINGER.ms);
  timer.unref();
  raw.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER.bytes) cut();
  });
  raw.once('end', () => clearTimeout(timer));
  raw.once('close', () => clearTimeout(timer));
  raw.resume();
}
