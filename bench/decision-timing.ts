/**
 * `node --import <this> dist/src/cli/main.js serve ...`: the real `vnum serve`
 * with its routing decisions timed for bench/routing.ts. It subscribes to the
 * product's trace of every route() call (ROUTE_TRACE, 'vnum:route', in
 * src/routing/service.ts) and times each, in µs; the product itself times
 * nothing. The parent takes the durations over the IPC channel it spawned
 * vnum serve with: `{ type: 'take-decisions' }` is answered
 * `{ type: 'decisions', micros, dropped }`, and counting starts afresh.
 * Beyond CAPACITY durations between two takes, the rest are counted as
 * dropped, and the benchmark fails rather than report a part as the whole.
 */
import { tracingChannel } from 'node:diagnostics_channel';

const CAPACITY = 1 << 22;
let micros = new Float64Array(1 << 16);
let count = 0;
let dropped = 0;
tracingChannel<unknown, { startedAt?: number }>('vnum:route').subscribe({
  // The product hands each call a fresh context object: the start time rides on it.
  start(context) {
    context.startedAt = performance.now();
  },
  end(context) {
    const took = (performance.now() - context.startedAt!) * 1000;
    if (count === micros.length) {
      if (micros.length === CAPACITY) {
        dropped++;
        return;
      }
      const grown = new Float64Array(micros.length * 2);
      grown.set(micros);
      micros = grown;
    }
    micros[count++] = took;
  },
  asyncStart() {},
  asyncEnd() {},
  error() {},
});

process.on('message', (message: { type?: string }) => {
  if (message?.type !== 'take-decisions') return;
  process.send?.({ type: 'decisions', micros: micros.slice(0, count), dropped });
  count = 0;
  dropped = 0;
});
// The channel is the benchmark's, not the router's: it must not keep vnum serve alive after SIGTERM.
process.channel?.unref();
