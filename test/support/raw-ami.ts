import net from 'node:net';

/** An AMI message: its header lines, in order, as `[name, value]`. */
export type AmiHeaders = Array<[string, string]>;

/** Splits the complete messages (each ends with a blank line) off the front of `buffer`; `rest` is what is left. */
export function takeAmiMessages(buffer: string): { messages: Array<{ raw: string; headers: AmiHeaders }>; rest: string } {
  const messages: Array<{ raw: string; headers: AmiHeaders }> = [];
  let end: number;
  while ((end = buffer.indexOf('\r\n\r\n')) >= 0) {
    const raw = buffer.slice(0, end);
    buffer = buffer.slice(end + 4);
    const headers = raw.split('\r\n').filter(Boolean).map((line): [string, string] => {
      const at = line.indexOf(':');
      return at < 0 ? [line, ''] : [line.slice(0, at), line.slice(at + 1).replace(/^ /, '')];
    });
    messages.push({ raw, headers });
  }
  return { messages, rest: buffer };
}

export interface RawAmi {
  /** The greeting line, e.g. `Asterisk Call Manager/11.0.0`. */
  banner: string;
  /** Every message received, as a record (the first of a repeated header wins). */
  messages: Array<Record<string, string>>;
  send(lines: string[]): void;
  /** Sends an action and resolves with the next response (events are not answers). */
  request(lines: string[]): Promise<Record<string, string>>;
  close(): void;
}

/** A bare AMI connection, to see exactly what Asterisk says to a session; rejects with the connection's error. */
export function rawAmi(options: { host?: string; port?: number; localAddress?: string } = {}): Promise<RawAmi> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: options.port ?? 5038, host: options.host ?? '127.0.0.1', localAddress: options.localAddress });
    const messages: Array<Record<string, string>> = [];
    const waiting: Array<(m: Record<string, string>) => void> = [];
    let buffer = '';
    let banner: string | undefined;
    const send = (lines: string[]): void => void socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    socket.setEncoding('utf8');
    socket.once('error', reject);
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (banner === undefined) {
        const nl = buffer.indexOf('\r\n');
        if (nl < 0) return;
        banner = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        resolve({
          banner,
          messages,
          send,
          request: (lines) =>
            new Promise((answered, fail) => {
              const timer = setTimeout(() => fail(new Error(`no AMI response to ${lines[0]}`)), 5_000);
              waiting.push((m) => {
                clearTimeout(timer);
                answered(m);
              });
              send(lines);
            }),
          close: () => socket.destroy(),
        });
      }
      const taken = takeAmiMessages(buffer);
      buffer = taken.rest;
      for (const { headers } of taken.messages) {
        const fields: Record<string, string> = {};
        for (const [name, value] of headers) if (!(name in fields)) fields[name] = value;
        messages.push(fields);
        if (fields.Response !== undefined) waiting.shift()?.(fields);
      }
    });
  });
}
