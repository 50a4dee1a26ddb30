import net from 'node:net';
import { loopback, ports } from './paths.js';

/**
 * A throwaway FastAGI server for the cases the real router must never
 * produce: one that accepts and never answers, one that hangs up at once, one
 * that answers with hostile values. It speaks just enough of the protocol:
 * read the environment up to the blank line, send one command, read its
 * reply, close.
 */

export type AgiEnv = Record<string, string>;

export type StubBehaviour =
  /** Send `EXEC MSet "<vars>"` built from these (values sent verbatim, escaped for AGI only). */
  | { kind: 'mset'; vars: Record<string, string> }
  /** Read the environment, then say nothing and keep the socket open. */
  | { kind: 'stall' }
  /** Close the socket as soon as the environment arrived. */
  | { kind: 'close' };

export interface AgiStub {
  /** Environments received, one per FastAGI session, in order. */
  readonly sessions: AgiEnv[];
  readonly port: number;
  close(): Promise<void>;
}

/** AGI argument quoting: one token in double quotes, \ and " escaped. */
function agiQuote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** MSet's own syntax: name=value pairs, commas inside values escaped. */
export function msetData(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `${k}=${v.replace(/[\\,]/g, (c) => `\\${c}`)}`)
    .join(',');
}

export async function startAgiStub(
  decide: (env: AgiEnv) => StubBehaviour | Promise<StubBehaviour>,
  port: number = ports.router,
): Promise<AgiStub> {
  const sessions: AgiEnv[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffer = '';
    let envDone = false;
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      if (envDone) return;
      const end = buffer.indexOf('\n\n');
      if (end < 0) return;
      envDone = true;
      const env: AgiEnv = {};
      for (const line of buffer.slice(0, end).split('\n')) {
        const sep = line.indexOf(': ');
        if (sep > 0) env[line.slice(0, sep)] = line.slice(sep + 2);
      }
      buffer = buffer.slice(end + 2);
      sessions.push(env);
      void Promise.resolve()
        .then(() => decide(env))
        .catch((): StubBehaviour => ({ kind: 'close' }))
        .then((behaviour) => answer(behaviour));
    });
    const answer = (behaviour: StubBehaviour): void => {
      if (socket.destroyed) return;
      if (behaviour.kind === 'close') {
        socket.end();
      } else if (behaviour.kind === 'mset') {
        socket.write(`EXEC MSet ${agiQuote(msetData(behaviour.vars))}\n`);
        const waitReply = (): void => {
          if (/^\d{3} /m.test(buffer)) socket.end();
        };
        socket.on('data', waitReply);
        waitReply();
      }
      // stall: nothing, until Asterisk or close() ends the socket.
    };
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, loopback, () => resolve());
  });
  return {
    sessions,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
