import type { Server, Socket } from 'node:net';
import dingDong from 'ding-dong';

function ignoreError(): void {}

/**
 * The listening socket, bound with ding-dong's server (the design's FastAGI
 * package) and nothing else of it. Two covers: the port goes in as a string
 * because ding-dong's `portIn || settings.port` turns 0 into 3000; and its own
 * 'connection' listener is removed, because it wraps every socket in a
 * Context whose constructor alone costs more CPU than a whole bare
 * connection, whose error re-emit crashes the process when unheard, and whose
 * parser has the defects test/unit/agi-dingdong.test.ts shows. The wire is
 * ./wire.ts.
 */
export function listen(host: string, port: number, onConnection: (socket: Socket) => void): Promise<Server> {
  const server = dingDong(ignoreError).start(String(port), host);
  server.removeAllListeners('connection');
  server.on('connection', onConnection);
  return new Promise<Server>((resolve, reject) => {
    const failed = (error: Error): void => {
      server.removeListener('listening', listening);
      reject(error);
    };
    const listening = (): void => {
      server.removeListener('error', failed);
      resolve(server);
    };
    server.once('error', failed);
    server.once('listening', listening);
  });
}
