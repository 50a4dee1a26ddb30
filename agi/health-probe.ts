/**
 * The router's health probe: a FastAGI exchange, so that a check proves the
 * router answers (accepts the prober's address, reads an environment, writes
 * a command, reads the reply), not only that something holds the port.
 *
 * The prober connects as Asterisk would for `AGI(agi://host:port/vnum-health)`
 * and sends a minimal environment; the router recognises the script name,
 * answers with one fixed command that carries nothing (no number, no session,
 * no version) and closes. It never reaches the handler (nor, in vnum, the store).
 * A peer gets that answer only through the same gates as a call: the
 * allow-list, the connection cap and the connection deadline.
 *
 * Asterisk itself can probe the same way from the dialplan:
 * `AGI(agi://127.0.0.1:4573/vnum-health)` sets VNUM_HEALTH=OK.
 */
import net from 'node:net';
import { buildCommand } from './wire.js';

/** `agi_network_script` of a probe: the path of `agi://host:port/vnum-health`. */
export const HEALTH_PROBE_SCRIPT = 'vnum-health';

/** The router's whole answer to a probe. */
export const HEALTH_PROBE_ANSWER = buildCommand('SET VARIABLE', ['VNUM_HEALTH', 'OK']);

export type ProbeResult = { ok: true } | { ok: false; error: string };

/** The environment a probe sends: what Asterisk's setup_env() writes first, nothing of a call. */
export function probeEnvironment(host: string, port: number): string {
  const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  return (
    'agi_network: yes\n' +
    `agi_network_script: ${HEALTH_PROBE_SCRIPT}\n` +
    `agi_request: agi://${authority}/${HEALTH_PROBE_SCRIPT}\n` +
    `agi_channel: ${HEALTH_PROBE_SCRIPT}\n` +
    `agi_type: ${HEALTH_PROBE_SCRIPT}\n` +
    '\n'
  );
}

/** Printable, bounded: what a foreign server said, for an error message. */
function shown(text: string): string {
  const clipped = text.length > 60 ? `${text.slice(0, 60)}…` : text;
  return JSON.stringify(clipped);
}

/**
 * Probe the router at host:port. Resolves (never rejects) with ok, or with
 * the reason it cannot serve: not listening, refused this address (or full,
 * or stopping), silent past the timeout, or not a vnum router at all.
 */
export function probeRouter(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let connected = false;
    let from = 'this address';
    let received = '';
    let answered = false;
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // After a good answer the reply is still being written: end() lets it go, then closes.
      if (!answered) socket.destroy();
      resolve(result);
    };
    const refused = (): ProbeResult => ({
      ok: false,
      error:
        `the router closed the connection without answering: ${from} is not in its allow-list ` +
        '(VNUM_AGI_ALLOW), or it is at --max-connections, or stopping',
    });
    const timer = setTimeout(
      () => finish({ ok: false, error: connected ? `connected, but no answer within ${timeoutMs} ms` : `no connection within ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      from = socket.localAddress ?? from;
      socket.write(probeEnvironment(host, port));
    });
    socket.on('data', (chunk: string) => {
      if (answered) return;
      received += chunk;
      const nl = received.indexOf('\n');
      if (nl < 0) {
        if (received.length > 4096) finish({ ok: false, error: `not a vnum router: it sent ${shown(received)}` });
        return;
      }
      const line = received.slice(0, nl).replace(/\r$/, '');
      if (line !== HEALTH_PROBE_ANSWER) {
        finish({ ok: false, error: `not a vnum router (or an older one without the health probe): it answered ${shown(line)}` });
        return;
      }
      answered = true;
      // As Asterisk would: the command succeeded. The router then closes.
      socket.end('200 result=1\n');
      socket.setTimeout(timeoutMs, () => socket.destroy());
      finish({ ok: true });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (settled) return;
      if (connected && !answered && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) finish(refused());
      else finish({ ok: false, error: `not listening: ${error.code ?? error.message}` });
    });
    socket.once('close', () => {
      if (!answered) finish(connected ? refused() : { ok: false, error: 'not listening: connection closed' });
    });
  });
}
