/**
 * Prometheus's text exposition as tests read it: each sample line,
 * `name{labels} value`, keyed by `name{labels}` exactly as printed.
 */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** GET a /metrics URL and read its samples. */
export async function scrape(url: string): Promise<Map<string, number>> {
  return samples(await (await fetch(url)).text());
}
