/**
 * The product's routing/service.js with its router's `route` timed: every
 * decision `vnum serve` makes (file check, both numbers, the store lookup),
 * under the benchmark's load, in µs. hooks.ts puts this module where serve.js
 * imports the product's; everything else it exports is the product's own.
 *
 * The parent (bench/routing.ts) takes the durations gathered so far over the
 * IPC channel it spawned vnum serve with: `{ type: 'take-decisions' }` is
 * answered `{ type: 'decisions', micros, dropped }` and starts afresh. The
 * buffer holds CAPACITY durations; beyond that they are counted as dropped
 * and the benchmark fails rather than report a part as the whole.
 */
import { createCallRouter as productCallRouter, type CallRouter, type CallRouterOptions } from '../../src/routing/service.js';

export * from '../../src/routing/service.js';

const CAPACITY = 1 << 20;
let micros = new Float64Array(CAPACITY);
let count = 0;
let dropped = 0;

process.on('message', (message: { type?: string }) => {
  if (message?.type !== 'take-decisions') return;
  process.send?.({ type: 'decisions', micros: micros.slice(0, count), dropped });
  micros = new Float64Array(CAPACITY);
  count = 0;
  dropped = 0;
});
// The channel is the benchmark's, not the router's: it must not keep vnum serve alive after SIGTERM.
process.channel?.unref();

export function createCallRouter(options: CallRouterOptions): CallRouter {
  const router = productCallRouter(options);
  const route = router.route.bind(router);
  return {
    ...router,
    route(call) {
      const started = performance.now();
      const answer = route(call);
      const took = (performance.now() - started) * 1000;
      if (count < CAPACITY) micros[count++] = took;
      else dropped++;
      return answer;
    },
  };
}
