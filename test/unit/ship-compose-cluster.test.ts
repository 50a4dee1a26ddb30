/**
 * docker/cluster/compose.yaml, the two-PBX example, without Docker: the file
 * against the Compose specification (dclint, with its style rules), and its
 * wiring against the project: each node's replica and router share one
 * file and nothing else, each router is reached by its own Asterisk as the
 * image's dialplan asks, the authority's address carries no password and
 * matches PostgreSQL's settings, logical replication is on and bounded, the
 * commands are vnum's, and every variable is one vnum reads and is
 * documented. ship-compose.test.ts checks the Dockerfiles both files build.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPLICA_DEFAULTS, slotForNode } from '../../src/replica/names.js';
import { vnum } from '../support/cli.js';
import { envVarsReadByProduct, iniValues, parseIni } from '../support/ship.js';
import { readRepo, repoPath, repoRoot } from '../support/repo.js';

const COMPOSE = 'docker/cluster/compose.yaml';
const composeDir = repoPath('docker/cluster');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  networks: Record<string, { ipv4_address?: string; aliases?: string[] } | null>;
  depends_on?: Record<string, { condition: string }>;
  command?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  read_only?: boolean;
  cap_drop?: string[];
}
interface Compose {
  services: Record<string, Service>;
  networks: Record<string, { internal?: boolean; ipam?: { config: Array<{ subnet: string }> } }>;
  volumes: Record<string, unknown>;
}

const composeText = readRepo(COMPOSE);
// The vnum services share their build and hardening through a YAML merge key (<<: *vnum).
const compose = parse(composeText, { merge: true }) as Compose;
const services = compose.services;

/** `${NAME:-default}` as docker compose reads it with NAME unset; `${NAME:?message}` stands for the operator's value. */
function interpolate(value: string): string {
  return value.replace(/\$\{(\w+)(?:(:-|:\?)([^}]*))?\}/g, (_, name: string, kind?: string, fallback?: string) =>
    kind === ':-' ? (fallback ?? '') : `<${name}>`,
  );
}
const interpolated = [...composeText.matchAll(/\$\{(\w+)(?:(:-|:\?)([^}]*))?\}/g)];

const NODES = [
  { replica: 'replica-a', router: 'router-a', asterisk: 'asterisk-a', network: 'pbx-a' },
  { replica: 'replica-b', router: 'router-b', asterisk: 'asterisk-b', network: 'pbx-b' },
] as const;
const VNUM_SERVICES = ['api-1', 'api-2', 'migrate', 'replica-a', 'replica-b', 'router-a', 'router-b'];

const toInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
function inSubnet(ip: string, subnet: string): boolean {
  const [base, bits] = subnet.split('/');
  const mask = (~0 << (32 - Number(bits))) >>> 0;
  return ((toInt(ip) & mask) >>> 0) === ((toInt(base!) & mask) >>> 0);
}

describe('docker/cluster/compose.yaml', () => {
  it('is valid against the Compose specification and clean under dclint', () => {
    const r = spawnSync(repoPath('node_modules/.bin/dclint'), ['-f', 'json', COMPOSE], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
    const [report] = JSON.parse(r.stdout) as Array<{ messages: unknown[] }>;
    expect(report!.messages).toEqual([]);
    expect(r.status).toBe(0);
  });

  it('has PostgreSQL, the migration, two APIs and two nodes of three services each; every vnum service from the router image, hardened', () => {
    expect(Object.keys(services).sort()).toEqual(['api-1', 'api-2', 'asterisk-a', 'asterisk-b', 'migrate', 'postgres', 'replica-a', 'replica-b', 'router-a', 'router-b']);
    for (const name of VNUM_SERVICES) {
      const s = services[name]!;
      expect(path.resolve(composeDir, s.build!.context), name).toBe(repoRoot);
      expect(s.build!.dockerfile, name).toBe('docker/router/Dockerfile');
      expect(s.read_only, name).toBe(true);
      expect(s.cap_drop, name).toEqual(['ALL']);
    }
    for (const name of ['asterisk-a', 'asterisk-b']) expect(services[name]!.build!.dockerfile).toBe('docker/asterisk/Dockerfile');
    expect(existsSync(repoPath('docker/router/Dockerfile'))).toBe(true);
    expect(services.postgres!.image).toMatch(/^postgres:15\.\d+-bookworm$/);
  });

  it("each vnum service runs a command vnum has (the router the image's default, vnum serve)", () => {
    const commands = new Map<string, string[]>();
    for (const name of VNUM_SERVICES) commands.set((services[name]!.command ?? ['serve']).filter((a) => !a.startsWith('-') && !a.includes('://')).join(' '), []);
    expect([...commands.keys()].sort()).toEqual(['api', 'cluster migrate', 'replica', 'serve']);
    for (const command of commands.keys()) {
      const r = vnum([...command.split(' '), '--help']);
      expect(r.code, `vnum ${command}: ${r.stderr}`).toBe(0);
    }
    // The replica's and the migration's authority come from VNUM_AUTHORITY; each API's from its command line.
    for (const name of ['migrate', 'replica-a', 'replica-b']) expect(vnum([...services[name]!.command!, '--help']).stdout).toContain('--authority');
    for (const name of ['api-1', 'api-2']) expect(services[name]!.command).toEqual(['api', '--authority', 'postgres://vnum@postgres:5432/vnum']);
  });

  it('vnum api takes --authority, as both API services give it: their command and environment run here reach for that authority', () => {
    expect(vnum(['api', '--help']).stdout).toContain('--authority <url>');
    for (const name of ['api-1', 'api-2']) {
      const s = services[name]!;
      const env = Object.fromEntries(Object.entries(s.environment!).map(([k, v]) => [k, interpolate(String(v))]));
      // Every setting accepted; the API opens its authority before it listens, and the service's host name means nothing here.
      const r = vnum(s.command!, env);
      expect(r.stderr, name).toMatch(/the authority vnum@postgres:5432\/vnum cannot be reached: .*\[VNUM_AUTHORITY_UNAVAILABLE\]/);
      expect(r.code, name).toBe(2);
    }
  });

  it("the authority's address carries no password, and names PostgreSQL's service, user and database; the password is PostgreSQL's own", () => {
    const pg = services.postgres!.environment!;
    const urls = new Set<string>();
    for (const name of VNUM_SERVICES) {
      const s = services[name]!;
      const url = s.environment!.VNUM_AUTHORITY ?? s.command!.find((a) => a.startsWith('postgres://'))!;
      urls.add(url);
      expect(s.environment!.PGPASSWORD, name).toBe(pg.POSTGRES_PASSWORD);
      expect(Object.keys(s.networks), name).toContain('authority');
    }
    expect(urls.size).toBe(1);
    const url = new URL([...urls][0]!);
    expect(url.password).toBe('');
    expect([url.username, url.hostname, url.pathname.slice(1)]).toEqual([pg.POSTGRES_USER, 'postgres', pg.POSTGRES_DB]);
    expect(url.port).toBe('5432');
    expect(pg.POSTGRES_PASSWORD).toMatch(/^\$\{VNUM_PG_PASSWORD:\?/);
  });

  it('PostgreSQL has logical replication on, slots bounded by max_slot_wal_keep_size, and frees a dead link above the nodes\' link timeout', () => {
    const settings = new Map(
      services.postgres!.command!.filter((_, i, all) => all[i - 1] === '-c').map((kv) => kv.split('=') as [string, string]),
    );
    expect(settings.get('wal_level')).toBe('logical');
    expect(settings.get('max_slot_wal_keep_size')).toMatch(/^\d+(MB|GB)$/);
    expect(Number(settings.get('max_replication_slots'))).toBeGreaterThanOrEqual(NODES.length + 2);
    expect(Number(settings.get('max_wal_senders'))).toBeGreaterThanOrEqual(NODES.length + 2);
    expect(Number(/^(\d+)s$/.exec(settings.get('wal_sender_timeout')!)![1]) * 1000).toBeGreaterThan(REPLICA_DEFAULTS.staleAfterMs);
    // Nothing but the vnum services that need it reaches the authority's network, which has no way out.
    expect(compose.networks.authority!.internal).toBe(true);
    const onAuthority = Object.keys(services).filter((s) => Object.keys(services[s]!.networks).includes('authority'));
    expect(onAuthority.sort()).toEqual(['api-1', 'api-2', 'migrate', 'postgres', 'replica-a', 'replica-b', 'router-a', 'router-b']);
    // Everything that uses the schema waits for the migration to succeed; the migration for PostgreSQL to be ready.
    for (const name of ['api-1', 'api-2', 'replica-a', 'replica-b']) expect(services[name]!.depends_on).toEqual({ migrate: { condition: 'service_completed_successfully' } });
    expect(services.migrate!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
  });

  it("each node: its replica and its router share one file, no other node's; one slot-valid node name each", () => {
    const volumes = new Set<string>();
    const nodes = new Set<string>();
    for (const node of NODES) {
      const replica = services[node.replica]!;
      const router = services[node.router]!;
      expect(replica.volumes).toEqual(router.volumes);
      expect(replica.volumes).toHaveLength(1);
      const [volume, target] = replica.volumes![0]!.split(':');
      expect(Object.keys(compose.volumes)).toContain(volume);
      expect(path.posix.dirname(replica.environment!.VNUM_DB!)).toBe(target);
      expect(router.environment!.VNUM_DB).toBe(replica.environment!.VNUM_DB);
      volumes.add(volume!);
      const name = replica.environment!.VNUM_NODE!;
      expect(() => slotForNode(name)).not.toThrow();
      nodes.add(name);
      // The router routes from the file alone; it reaches the authority only to send its sliding pushes (off the call path).
      expect(Object.keys(router.networks).sort()).toEqual(['authority', node.network].sort());
      expect(router.ports).toBeUndefined();
      // The freshness policy, chosen by the operator, the default documented.
      expect(interpolate(router.environment!.VNUM_WHEN_STALE!)).toBe('keep-routing');
      expect(interpolate(router.environment!.VNUM_STALE_AFTER!)).toBe('10s');
      // The image's health check is the router's (vnum health): off for the replica.
      expect(replica.healthcheck).toEqual({ disable: true });
    }
    expect(volumes.size).toBe(NODES.length);
    expect(nodes.size).toBe(NODES.length);
    // The APIs keep no file: stateless.
    for (const name of ['api-1', 'api-2']) expect(services[name]!.volumes).toBeUndefined();
  });

  it("each Asterisk reaches its own router as the image's dialplan asks, admits only it to AMI, and is the only one its router admits", () => {
    const globals = parseIni(readRepo('docker/asterisk/etc/extensions.conf'), 'asterisk');
    const agi = new URL(iniValues(globals, 'globals', 'VNUM_AGI_URL')[0]!);
    const manager = parseIni(readRepo('docker/asterisk/etc/manager.conf'), 'asterisk');
    const subnets = new Set<string>();
    for (const node of NODES) {
      const router = services[node.router]!;
      const asterisk = services[node.asterisk]!;
      const network = compose.networks[node.network]!;
      expect(network.internal).toBe(true);
      const subnet = network.ipam!.config[0]!.subnet;
      subnets.add(subnet);
      const routerNet = router.networks[node.network]!;
      const routerIp = routerNet.ipv4_address!;
      const asteriskIp = asterisk.networks[node.network]!.ipv4_address!;
      expect(inSubnet(routerIp, subnet) && inSubnet(asteriskIp, subnet)).toBe(true);
      expect(routerIp).not.toBe(asteriskIp);
      // agi://router:4573 resolves, on this node's network only, to this node's router.
      expect(routerNet.aliases).toEqual([agi.hostname]);
      expect(router.environment!.VNUM_AGI_PORT).toBe(agi.port);
      expect(Object.keys(services).filter((s) => Object.keys(services[s]!.networks).includes(node.network)).sort()).toEqual([node.asterisk, node.router].sort());
      expect(router.environment!.VNUM_AGI_ALLOW!.split(',').sort()).toEqual(['127.0.0.1', asteriskIp].sort());
      expect(router.environment!.VNUM_AMI_HOST).toBe(asteriskIp);
      expect(router.environment!.VNUM_AMI_PORT).toEqual(iniValues(manager, 'general', 'port')[0]);
      expect(manager.map((s) => s.name)).toContain(router.environment!.VNUM_AMI_USER);
      expect(asterisk.environment).toEqual({ VNUM_AMI_SECRET: router.environment!.VNUM_AMI_SECRET, VNUM_ASTERISK_IP: asteriskIp, VNUM_ROUTER_IP: routerIp });
      expect(asterisk.depends_on).toEqual({ [node.router]: { condition: 'service_started' } });
      const [source, mounted, mode] = asterisk.volumes![0]!.split(':');
      expect(existsSync(path.resolve(composeDir, source!))).toBe(true);
      expect([mounted, mode]).toEqual(['/etc/asterisk/pjsip-carrier.conf', 'ro']);
    }
    expect(subnets.size).toBe(NODES.length);
  });

  it('the two Asterisks publish the ports Asterisk binds on two host addresses the operator gives; the APIs on loopback only', () => {
    const pjsip = parseIni(readRepo('docker/asterisk/etc/pjsip.conf'), 'asterisk');
    const bind = pjsip.find((s) => s.name === 'transport-udp')!.entries.find(([k]) => k === 'bind')![1];
    const sipPort = bind.split(':')[1];
    const rtp = parseIni(readRepo('docker/asterisk/etc/rtp.conf'), 'asterisk');
    const range = `${iniValues(rtp, 'general', 'rtpstart')[0]}-${iniValues(rtp, 'general', 'rtpend')[0]}`;
    const addresses = new Set<string>();
    for (const [node, name] of [['A', 'asterisk-a'], ['B', 'asterisk-b']] as const) {
      const ports = services[name]!.ports!.map(interpolate);
      expect(ports).toEqual([`<VNUM_PBX_${node}_ADDRESS>:${sipPort}:${sipPort}/udp`, `<VNUM_PBX_${node}_ADDRESS>:${range}:${range}/udp`]);
      addresses.add(ports[0]!.split(':')[0]!);
    }
    expect(addresses.size).toBe(2);
    const published = ['api-1', 'api-2'].map((name) => {
      const s = services[name]!;
      const [host, hostPort, container] = s.ports![0]!.split(':');
      expect(host).toBe('127.0.0.1');
      expect(container).toBe(s.environment!.VNUM_API_PORT);
      return hostPort;
    });
    expect(new Set(published).size).toBe(2);
  });

  it('every VNUM_ variable is one vnum reads; every ${VARIABLE} has a default or says how to set it, and is documented here and in the guide', () => {
    const read = envVarsReadByProduct();
    for (const name of VNUM_SERVICES) {
      for (const key of Object.keys(services[name]!.environment ?? {}).filter((k) => k.startsWith('VNUM_'))) expect(read, `${name}: ${key}`).toContain(key);
    }
    expect(interpolated.length).toBeGreaterThan(0);
    const header = composeText.split('\nx-vnum:')[0]!;
    const guide = readRepo('docs/operator-guide.md');
    const table = guide.split('### Cluster compose variables')[1]?.split('\n\n').find((p) => p.startsWith('| variable'));
    expect(table, "the guide's cluster compose variable table").toBeDefined();
    for (const m of interpolated) {
      expect(m[2], `${m[1]} has a default or is required`).toBeDefined();
      if (m[2] === ':?') {
        expect(m[3], `${m[1]}: the message says where to set it`).toMatch(/docker\/cluster\/\.env/);
        expect(header, `${m[1]} marked required in the file`).toMatch(new RegExp(`${m[1]}\\s+required`));
      }
      expect(header, `${m[1]} documented in the file`).toContain(m[1]);
      expect(table, `${m[1]} in the guide's table`).toContain(`| \`${m[1]}\` |`);
    }
  });
});
