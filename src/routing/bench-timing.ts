import { renameSync, writeFileSync } from 'node:fs';

/**
 * For bench/routing.ts only: with VNUM_BENCH_TIMING=<file> in its
 * environment, `vnum serve` times every routing decision (the router's whole
 * `route` call: file check, both numbers normalised, the store lookup) inside
 * the serving process, under the benchmark's load. On SIGUSR2 it writes the
 * durations gathered since the last dump to <file> (float64 µs, native byte
 * order; written to <file>.tmp and renamed, so a reader never sees half of it)
 * and starts afresh. Unset, none of this runs.
 */
export const BENCH_TIMING_ENV = 'VNUM_BENCH_TIMING';

export function withDecisionTiming<A, R>(
  route: (call: A) => R,
  file: string,
): { route: (call: A) => R; stop(): void } {
  let samples = new Float64Array(1 << 16);
  let count = 0;
  const dump = (): void => {
    writeFileSync(`${file}.tmp`, new Uint8Array(samples.buffer, 0, count * 8));
    renameSync(`${file}.tmp`, file);
    count = 0;
  };
  process.on('SIGUSR2', dump);
  return {
    route(call: A): R {
      const started = performance.now();
      const result = route(call);
      const micros = (performance.now() - started) * 1000;
      if (count === samples.length) {
        const grown = new Float64Array(samples.length * 2);
        grown.set(samples);
        samples = grown;
      }
      samples[count++] = micros;
      return result;
    },
    stop: () => {
      process.off('SIGUSR2', dump);
    },
  };
}
