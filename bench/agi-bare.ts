/**
 * The baseline of bench/routing.ts: a bare Node TCP responder speaking the
 * router's side of FastAGI with no lookup, in its own process as `vnum serve`
 * is. Per connection: read the environment up to its blank line, write one
 * fixed `EXEC MSet` line of the same shape as vnum's BRIDGE answer, wait for
 * Asterisk's reply (skipping `HANGUP` lines), then close, as vnum does.
 *
 * Forked with an IPC channel: reports `{ type: 'listening', port }`.
 */
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { buildMSet } from '../agi/wire.js';

/** The same variables vnum sends for a bridged call (numbers and session id of the same lengths). */
export const BARE_ANSWER = `${buildMSet([
  ['VNUM_STATUS', 'BRIDGE'],
  ['VNUM_TARGET', '+447412345678'],
  ['VNUM_CLI', '+442079460123'],
  ['VNUM_SESSION', 'ord-00abcd'],
])}\n`;

const REPLY = /^\d{3}[ -]/;

export function startBareResponder(port = 0): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.setEncoding('latin1');
    let buffered = '';
    let answered = false;
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (!answered) {
        const end = buffered.indexOf('\n\n');
        if (end < 0) return;
        buffered = buffered.slice(end + 2);
        answered = true;
        socket.write(BARE_ANSWER);
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (REPLY.test(line)) {
          socket.end();
          return;
        }
      }
    });
    socket.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (process.send !== undefined && process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await startBareResponder();
  process.send({ type: 'listening', port: (server.address() as net.AddressInfo).port });
  process.on('disconnect', () => server.close());
}
