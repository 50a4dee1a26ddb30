import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import type { PgTarget } from '../../../src/replica/stream.js';
import { migratePg } from '../../../src/store/pg/migrate.js';
import { PG_MIGRATIONS } from '../../../src/store/pg/migrations.js';
import { asteriskBlocker, provision } from '../asterisk/provision.js';
import { createHosts, netnsBlocker, type Hosts } from './netns.js';
import { describeWhen, type Blocker } from '../suite.js';
import { PgCluster, pgBlocker, type PgClusterOptions } from './pg.js';
import { Writer } from './writer.js';

/**
 * A cluster test file's frame: skipped with one line where PostgreSQL (or,
 * with hosts, network namespaces) cannot be had, failing instead under
 * CI=true; otherwise a private cluster, a work folder and the hosts for the
 * whole file, all removed afterwards.
 */

export interface ClusterEnv {
  readonly cluster: PgCluster;
  /** A folder for the nodes' files. */
  readonly dir: string;
  /** The netns hosts, when asked for; the cluster listens on their links. */
  readonly hosts: Hosts | undefined;
  /** A fresh database, migrated (optionally with more migrations), seeded with the pool and the test rows, and a client on it. */
  authority(migrations?: readonly string[]): Promise<{ target: PgTarget; client: pg.Client }>;
}

/** Why these tests cannot run here (PostgreSQL, or with hosts, network namespaces, or with asterisk, the e2e Asterisk), or null. */
export function clusterBlocker(options: { hosts?: number; asterisk?: boolean } = {}): Blocker {
  return pgBlocker() ?? (options.hosts ? netnsBlocker() : null) ?? (options.asterisk ? asteriskBlocker() : null);
}

/** `asterisk`: the file also calls through the e2e harness's real Asterisk 22 (provisioned first, as e2eSuite does). */
export function clusterSuite(title: string, body: (env: ClusterEnv) => void, options: { hosts?: number; cluster?: PgClusterOptions; asterisk?: boolean } = {}): void {
  describeWhen(clusterBlocker(options), title, () => {
    if (options.asterisk) beforeAll(() => provision(), 15 * 60_000);
    let cluster: PgCluster | undefined;
    let dir: string | undefined;
    let hosts: Hosts | undefined;
    const env: ClusterEnv = {
      get cluster() {
        return cluster!;
      },
      get dir() {
        return dir!;
      },
      get hosts() {
        return hosts;
      },
      async authority(migrations = PG_MIGRATIONS) {
        const target = await cluster!.createDatabase();
        const client = cluster!.client(target);
        await client.connect();
        await migratePg(client, migrations);
        await Writer.seed(client);
        return { target, client };
      },
    };
    beforeAll(async () => {
      if (options.hosts) hosts = createHosts(options.hosts);
      cluster = await PgCluster.start({
        ...options.cluster,
        ...(hosts ? { listen: hosts.hosts.map((h) => h.gateway), allow: [hosts.subnet] } : {}),
      });
      dir = mkdtempSync(join(tmpdir(), 'vnum-cluster-test-'));
    });
    afterAll(() => {
      cluster?.remove();
      hosts?.remove();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
    body(env);
  });
}
