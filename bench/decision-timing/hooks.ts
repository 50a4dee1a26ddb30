/**
 * Module hooks for preload.ts, in vnum serve's process. Two redirections,
 * nothing else:
 * - the product's routing/service.js, imported by anything but service.ts
 *   (i.e. by serve.js), is service.ts: the same module with its router timed;
 * - service.ts's own imports of product modules, compiled here into the
 *   bench's build (dist-bench/src/...), go to the product's build (dist/src/...),
 *   so the router it times is the one `vnum serve` runs.
 */
type Resolved = { url: string; format?: string | null; shortCircuit?: boolean };
type NextResolve = (specifier: string, context: { parentURL?: string }) => Promise<Resolved>;

const TIMED = new URL('./service.js', import.meta.url).href;
// This file is dist-bench/bench/decision-timing/hooks.js; the product's build is dist/ beside dist-bench/.
const BENCH_SRC = new URL('../../src/', import.meta.url).href;
const PRODUCT_SRC = new URL('../../../dist/src/', import.meta.url).href;
const PRODUCT_SERVICE = `${PRODUCT_SRC}routing/service.js`;

export async function resolve(specifier: string, context: { parentURL?: string }, next: NextResolve): Promise<Resolved> {
  const resolved = await next(specifier, context);
  if (context.parentURL === TIMED && resolved.url.startsWith(BENCH_SRC)) {
    return { ...resolved, url: PRODUCT_SRC + resolved.url.slice(BENCH_SRC.length) };
  }
  if (resolved.url === PRODUCT_SERVICE && context.parentURL !== TIMED) {
    return { ...resolved, url: TIMED };
  }
  return resolved;
}
