/**
 * Types for ding-dong 0.1.7 (plain CommonJS, ships none). Only what vnum
 * touches: the server factory, and the per-connection Context that the
 * defect tests drive directly.
 */
declare module 'ding-dong' {
  import type { Server } from 'node:net';
  import type { EventEmitter } from 'node:events';

  namespace agi {
    interface Context extends EventEmitter {
      variables: Record<string, string>;
      sendCommand(command: string): Promise<{ code: number; result: string; value?: string }>;
      setVariable(name: string, value: string): Promise<unknown>;
      exec(application: string, ...args: string[]): Promise<unknown>;
      onEvent(event: string): Promise<unknown>;
      end(): Promise<void>;
    }
    interface Options {
      port?: number;
      host?: string;
      debug?: boolean;
      logger?: unknown;
    }
  }
  function agi(
    handler: (context: agi.Context) => void,
    options?: agi.Options,
  ): { start(port?: number | string, host?: string): Server };
  export = agi;
}

declare module 'ding-dong/lib/context.js' {
  import type { Duplex } from 'node:stream';
  import type agi from 'ding-dong';
  const Context: new (stream: Duplex, loggerOptions?: { debug?: boolean; logger?: unknown }) => agi.Context;
  export = Context;
}
