import type { Benchmark } from './benchmark.js';
import { storeBenchmark } from './store.js';
import { poolSizeBenchmark } from './pool-size.js';
import { routingBenchmark } from './routing.js';
import { asteriskBenchmark } from './asterisk.js';
import { pinBenchmark } from './pin.js';
import { apiBenchmark } from './api.js';
import { replicationBenchmark } from './replication.js';
import { replicaRoutingBenchmark } from './replica-routing.js';
import { apiClusterBenchmark } from './api-cluster.js';
import { webhooksBenchmark } from './webhooks.js';

/** Every benchmark, in the order `npm run bench` runs them. A new one is a module in bench/ added here. */
export const BENCHMARKS: readonly Benchmark[] = [
  storeBenchmark,
  poolSizeBenchmark,
  routingBenchmark,
  pinBenchmark,
  apiBenchmark,
  webhooksBenchmark,
  asteriskBenchmark,
  replicationBenchmark,
  replicaRoutingBenchmark,
  apiClusterBenchmark,
];
