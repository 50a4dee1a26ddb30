/**
 * The store's figures as a scrape reads them: the latest read, refreshed in
 * the background once it is older than `maxAgeMs`. A scrape never waits for
 * SQL and never runs it on the router's thread; the figures' age is exported
 * beside them, so a dashboard shows how fresh they are. Nobody scraping:
 * nothing read.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { StoreFigures } from './store-figures.js';

/** Where figures come from: the worker thread, or (tests) anything that returns them. */
export interface FiguresReader {
  read(): Promise<StoreFigures>;
  close(): Promise<void>;
}

/** Reads in ./store-worker.ts, one at a time, on a thread of its own (started at the first read). */
export function workerReader(dbPath: string): FiguresReader {
  let worker: Worker | undefined;
  let pending: { resolve: (f: StoreFigures) => void; reject: (e: Error) => void } | undefined;
  const fail = (error: Error): void => {
    pending?.reject(error);
    pending = undefined;
    worker = undefined;
  };
  const start = (): Worker => {
    const w = new Worker(new URL('./store-worker.js', import.meta.url), { workerData: { dbPath } });
    w.on('message', (message: { figures?: StoreFigures; error?: string }) => {
      const p = pending;
      pending = undefined;
      if (message.figures) p?.resolve(message.figures);
      else p?.reject(new Error(message.error ?? 'the figures worker answered nothing'));
    });
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the figures worker exited (${code})`)));
    // A scrape must never keep `vnum serve` from exiting.
    w.unref();
    return w;
  };
  return {
    read() {
      if (pending) return Promise.reject(new Error('a read is already in flight'));
      worker ??= start();
      const w = worker;
      return new Promise<StoreFigures>((resolve, reject) => {
        pending = { resolve, reject };
        w.postMessage('read');
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
    },
  };
}

export interface CachedFiguresOptions {
  reader: FiguresReader;
  maxAgeMs: number;
  logger: Logger;
  now?: () => number;
}

export class CachedFigures {
  private figures: StoreFigures | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** Reads that failed since the start (the figures then keep their last value, and age). */
  failures = 0;
  private readonly now: () => number;

  constructor(private readonly options: CachedFiguresOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The latest figures (undefined before the first read ends); starts a refresh when they are stale. */
  latest(): StoreFigures | undefined {
    if (this.figures === undefined || this.now() - this.figures.at >= this.options.maxAgeMs) void this.refresh();
    return this.figures;
  }

  /** Read now, unless a read is in flight (then that one). Never rejects. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inFlight ??= this.options.reader
      .read()
      .then(
        (figures) => {
          this.figures = figures;
        },
        (error: unknown) => {
          this.failures++;
          this.options.logger.warn({ err: error }, 'metrics: reading the store figures failed; they keep their last value');
        },
      )
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inFlight;
    await this.options.reader.close();
  }
}
