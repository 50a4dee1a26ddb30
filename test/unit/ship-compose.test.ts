/**
 * docker/compose.yaml and the two Dockerfiles, without Docker: the compose
 * file against the Compose specification's JSON schema (dclint, which also
 * applies its style rules), the Dockerfiles through dockerfile-utils (the
 * linter of the VS Code Docker extension), and every path, port and variable
 * the compose file names against the project.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { validate } from 'dockerfile-utils';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { copyParts, envVarsReadByProduct, execForm, filesUnder, iniSection, keptByDockerignore, iniValues, parseDockerfile, parseIni } from '../support/ship.js';
import { readRepo, repoPath, repoRoot } from '../support/repo.js';

const COMPOSE = 'docker/compose.yaml';
const composeDir = repoPath('docker');

interface Service {
  build: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  expose?: string[];
  networks: string[] | Record<string, { ipv4_address?: string } | null>;
  depends_on?: Record<string, { condition: string }>;
  read_only?: boolean;
  command?: string[];
  healthcheck?: { test: string[] };
}
interface Compose {
  services: Record<string, Service>;
  networks: Record<string, { internal?: boolean; ipam?: { config: Array<{ subnet: string }> } }>;
  volumes: Record<string, unknown>;
}

const composeText = readRepo(COMPOSE);
const compose = parse(composeText) as Compose;

/**
 * `${NAME:-default}` interpolation, as docker compose does with NAME unset;
 * `${NAME:?message}` (required) stands for a value the operator gives.
 */
function interpolate(value: string): string {
  return value.replace(/\$\{(\w+)(?:(:-|:\?)([^}]*))?\}/g, (_, name: string, kind?: string, fallback?: string) =>
    kind === ':-' ? (fallback ?? '') : `<${name}>`,
  );
}
/** Every ${...} in the file: name, `:-` or `:?`, default or message. */
const interpolated = [...composeText.matchAll(/\$\{(\w+)(?:(:-|:\?)([^}]*))?\}/g)];

function dockerfileOf(service: string) {
  const build = compose.services[service]!.build;
  return parseDockerfile(path.resolve(composeDir, build.context, build.dockerfile));
}

function networksOf(service: string): string[] {
  const n = compose.services[service]!.networks;
  return Array.isArray(n) ? n : Object.keys(n);
}

describe('docker/compose.yaml', () => {
  it('is valid against the Compose specification and clean under dclint', () => {
    const r = spawnSync(repoPath('node_modules/.bin/dclint'), ['-f', 'json', COMPOSE], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
    const [report] = JSON.parse(r.stdout) as Array<{ errorCount: number; warningCount: number; messages: unknown[] }>;
    expect(report!.messages).toEqual([]);
    expect(r.status).toBe(0);
  });

  it('the schema check can fail: a misspelt key is reported', () => {
    const broken = composeText.replace('    restart: unless-stopped\n', '    restartt: unless-stopped\n');
    expect(broken).not.toBe(composeText);
    const dir = mkdtempSync(path.join(tmpdir(), 'vnum-ship-compose-'));
    try {
      writeFileSync(path.join(dir, 'compose.yaml'), broken);
      const bad = spawnSync(repoPath('node_modules/.bin/dclint'), ['-f', 'json', 'compose.yaml'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      expect(bad.stdout).toContain('invalid-schema');
      expect(bad.status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has exactly the three services, each built from a Dockerfile of this project with its own .dockerignore', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'asterisk', 'router']);
    for (const [name, service] of Object.entries(compose.services)) {
      expect(path.resolve(composeDir, service.build.context), `${name} context`).toBe(repoRoot);
      const file = path.resolve(composeDir, service.build.context, service.build.dockerfile);
      expect(existsSync(file), `${name}: ${file}`).toBe(true);
      expect(existsSync(`${file}.dockerignore`), `${name}: ${file}.dockerignore`).toBe(true);
      // the API runs from the router's image (the same package, another command)
      expect(service.build.dockerfile).toBe(`docker/${name === 'api' ? 'router' : name}/Dockerfile`);
      // every file the Dockerfile COPYs from the context exists and survives the .dockerignore
      const ignore = readFileSync(`${file}.dockerignore`, 'utf8');
      for (const stage of parseDockerfile(file).stages) {
        for (const i of stage.instructions.filter((x) => x.keyword === 'COPY' && x.flags.from === undefined)) {
          for (const source of copyParts(i).sources) {
            expect(existsSync(repoPath(source)), `${name}: COPY ${source}`).toBe(true);
            const files = filesUnder(repoPath(source)).map((f) => path.relative(repoRoot, f));
            expect(files.length, `${name}: COPY ${source}`).toBeGreaterThan(0);
            for (const f of files) expect(keptByDockerignore(ignore, f), `${name}: ${f} in the build context`).toBe(true);
          }
        }
      }
      // and the context leaves out what must never be sent to the daemon
      for (const heavy of ['node_modules/x', '.cache/asterisk-root/x', 'dist/x', '.git/x', 'test/x', 'bench/x']) {
        expect(keptByDockerignore(ignore, heavy), `${name}: ${heavy} left out`).toBe(false);
      }
    }
  });

  it('the router is not published: no ports, only on the internal network, which Asterisk shares', () => {
    const router = compose.services.router!;
    expect(router.ports).toBeUndefined();
    expect(networksOf('router')).toEqual(['agi']);
    expect(compose.networks.agi!.internal).toBe(true);
    expect(networksOf('asterisk')).toContain('agi');
    // Nothing else may sit on that network.
    const onAgi = Object.keys(compose.services).filter((s) => networksOf(s).includes('agi'));
    expect(onAgi.sort()).toEqual(['asterisk', 'router']);
  });

  it('the API is vnum api on the router\'s volume, published on the host\'s loopback only, with its own health check', () => {
    const api = compose.services.api!;
    const router = compose.services.router!;
    expect(api.command).toEqual(['api']);
    expect(api.volumes).toEqual(router.volumes);
    expect(api.environment!.VNUM_DB).toBe(router.environment!.VNUM_DB);
    // every variable is one vnum reads
    const read = envVarsReadByProduct();
    for (const name of Object.keys(api.environment!)) expect(read, name).toContain(name);
    // published on 127.0.0.1 only, onto the port vnum api listens on
    const container = api.environment!.VNUM_API_PORT!;
    expect((api.ports ?? []).map((p) => interpolate(String(p)))).toEqual([`127.0.0.1:8474:${container}`]);
    expect(networksOf('api')).toEqual(['api']);
    expect(compose.networks.api!.internal).toBeUndefined();
    // the image's health check is the router's; the API's is its own readiness probe
    expect(api.healthcheck!.test).toEqual(['CMD', 'vnum', 'api', '--probe']);
    expect(readRepo('src/cli/api.ts')).toMatch(/\.option\('--probe'/);
  });

  it('the router admits Asterisk by its address on the private network, and itself for the health check', () => {
    const env = compose.services.router!.environment!;
    const allow = interpolate(env.VNUM_AGI_ALLOW!).split(',');
    const asteriskNet = (compose.services.asterisk!.networks as Record<string, { ipv4_address?: string }>).agi!;
    const asteriskIp = interpolate(asteriskNet.ipv4_address!);
    expect(allow.sort()).toEqual(['127.0.0.1', asteriskIp].sort());
    // 127.0.0.1: where the image's health check (vnum health) probes from.
    // that address lies in the network's subnet
    const subnet = interpolate(compose.networks.agi!.ipam!.config[0]!.subnet);
    const [base, bits] = subnet.split('/');
    const toInt = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
    const mask = bits === '0' ? 0 : (~0 << (32 - Number(bits))) >>> 0;
    expect(((toInt(asteriskIp) & mask) >>> 0) === ((toInt(base!) & mask) >>> 0)).toBe(true);
    // the same variable names it in both places
    expect(env.VNUM_AGI_ALLOW).toContain('${VNUM_ASTERISK_IP:-');
    expect(asteriskNet.ipv4_address).toContain('${VNUM_ASTERISK_IP:-');
  });

  it('every router variable is one vnum reads (src/, agi/), and the image sets none that it does not', () => {
    const read = envVarsReadByProduct();
    expect(read.size).toBeGreaterThan(5);
    for (const name of Object.keys(compose.services.router!.environment!)) expect(read, name).toContain(name);
    const imageVars = dockerfileOf('router')
      .stages.at(-1)!
      .instructions.filter((i) => i.keyword === 'ENV')
      .flatMap((i) => i.args.map((a) => a.split('=')[0]!))
      .filter((n) => n.startsWith('VNUM_'));
    expect(imageVars.length).toBeGreaterThan(0);
    for (const name of imageVars) expect(read, name).toContain(name);
  });

  it('every ${VARIABLE} has a default, or is required with a message saying how to set it; each is documented in the file and in the operator guide', () => {
    expect(interpolated.length).toBeGreaterThan(0);
    const guide = readRepo('docs/operator-guide.md');
    const header = composeText.split('\nname:')[0]!;
    const guideTable = guide.split('### Compose variables')[1]?.split('\n\n').find((p) => p.startsWith('| variable'));
    expect(guideTable, 'the guide\'s compose variable table').toBeDefined();
    for (const m of interpolated) {
      expect(m[2], `${m[1]} has a default or is required`).toBeDefined();
      if (m[2] === ':?') {
        expect(m[3], `${m[1]}: the message says how to set it`).toMatch(/docker\/\.env/);
        expect(header, `${m[1]} marked required in the compose file`).toMatch(new RegExp(`${m[1]}\\s+required`));
      }
      expect(header, `${m[1]} documented in the compose file`).toContain(m[1]);
      expect(guideTable, `${m[1]} in the guide's compose variable table`).toContain(`| \`${m[1]}\` |`);
    }
  });

  it('AMI is on for the router\'s least-privilege user: the router logs in at Asterisk\'s private address, and Asterisk lets in only the router\'s', () => {
    const router = compose.services.router!;
    const asterisk = compose.services.asterisk!;
    const routerIp = interpolate((router.networks as Record<string, { ipv4_address?: string }>).agi!.ipv4_address!);
    const asteriskIp = interpolate((asterisk.networks as Record<string, { ipv4_address?: string }>).agi!.ipv4_address!);
    expect(routerIp).not.toBe(asteriskIp);
    expect(interpolate(router.environment!.VNUM_AMI_HOST!)).toBe(asteriskIp);
    expect(router.environment!.VNUM_AMI_USER).toBe('vnum');
    // What the Asterisk image's entrypoint turns into bindaddr and permit.
    expect(interpolate(asterisk.environment!.VNUM_ASTERISK_IP!)).toBe(asteriskIp);
    expect(interpolate(asterisk.environment!.VNUM_ROUTER_IP!)).toBe(routerIp);
    // One secret, given by the operator (never a default in a file everyone has).
    expect(router.environment!.VNUM_AMI_SECRET).toMatch(/^\$\{VNUM_AMI_SECRET:\?/);
    expect(asterisk.environment!.VNUM_AMI_SECRET).toBe(router.environment!.VNUM_AMI_SECRET);
    // The port Asterisk's manager.conf listens on, the user it defines.
    const manager = parseIni(readRepo('docker/asterisk/etc/manager.conf'), 'asterisk');
    expect(iniValues(manager, 'general', 'port')).toEqual([router.environment!.VNUM_AMI_PORT]);
    expect(manager.map((section) => section.name)).toContain(router.environment!.VNUM_AMI_USER);
    // Every variable the Asterisk service sets is one its entrypoint reads, and the other way round.
    const entrypoint = readRepo('docker/asterisk/entrypoint.sh');
    const read = new Set([...entrypoint.matchAll(/\$\{?(VNUM_[A-Z_]+)/g)].map((m) => m[1]).filter((n) => n !== 'VNUM_AMI_CONF_DIR'));
    expect([...read].sort()).toEqual(Object.keys(asterisk.environment!).sort());
  });

  it('the database volume is where the router image keeps VNUM_DB', () => {
    const router = compose.services.router!;
    const [volume, target] = router.volumes![0]!.split(':');
    expect(Object.keys(compose.volumes)).toContain(volume);
    expect(path.posix.dirname(router.environment!.VNUM_DB!)).toBe(target);
    const image = dockerfileOf('router').stages.at(-1)!;
    expect(image.instructions.filter((i) => i.keyword === 'VOLUME').flatMap((i) => execForm(i.content))).toContain(target);
  });

  it('the FastAGI port and host agree across compose, the router image and the Asterisk globals', () => {
    const router = compose.services.router!;
    const port = router.environment!.VNUM_AGI_PORT!;
    expect(router.expose).toEqual([port]);
    const routerImage = dockerfileOf('router').stages.at(-1)!;
    expect(routerImage.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args)).toContain(`${port}/tcp`);
    const globals = parseIni(readRepo('docker/asterisk/etc/extensions.conf'), 'asterisk');
    const url = new URL(iniValues(globals, 'globals', 'VNUM_AGI_URL')[0]!);
    expect(url.protocol).toBe('agi:');
    expect(url.hostname).toBe('router'); // the compose service name
    expect(url.port).toBe(port);
    // Asterisk starts after the router, but cannot wait for it to be healthy:
    // the router's HEALTHCHECK is vnum health, which with VNUM_AMI_USER set
    // needs the AMI login, which needs Asterisk (a deadlock).
    const healthCheck = routerImage.instructions.find((i) => i.keyword === 'HEALTHCHECK')!;
    expect(execForm(healthCheck.content.replace(/^CMD\s+/, ''))).toEqual(['vnum', 'health']);
    expect(router.environment!.VNUM_AMI_USER).toBeDefined();
    expect(compose.services.asterisk!.depends_on).toEqual({ router: { condition: 'service_started' } });
  });

  it('the SIP and media ports published are the ones Asterisk binds (pjsip.conf, rtp.conf) and the image exposes', () => {
    const ports = compose.services.asterisk!.ports!.map(interpolate);
    const pjsip = parseIni(readRepo('docker/asterisk/etc/pjsip.conf'), 'asterisk');
    const bind = iniSection(pjsip, 'transport-udp', 'transport').entries.find(([k]) => k === 'bind')![1];
    const sipPort = bind.split(':')[1];
    const rtp = parseIni(readRepo('docker/asterisk/etc/rtp.conf'), 'asterisk');
    const range = `${iniValues(rtp, 'general', 'rtpstart')[0]}-${iniValues(rtp, 'general', 'rtpend')[0]}`;
    expect(ports).toEqual([`0.0.0.0:${sipPort}:${sipPort}/udp`, `0.0.0.0:${range}:${range}/udp`]);
    const exposed = dockerfileOf('asterisk').stages.at(-1)!.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args);
    expect(exposed.sort()).toEqual([`${sipPort}/udp`, `${range}/udp`].sort());
  });

  it('the bind-mounted trunk file exists and is the one the image ships and pjsip.conf includes', () => {
    const [source, target, mode] = compose.services.asterisk!.volumes![0]!.split(':');
    expect(mode).toBe('ro');
    const local = path.resolve(composeDir, source!);
    expect(existsSync(local)).toBe(true);
    // the image COPYs docker/asterisk/etc/ to /etc/asterisk/
    const copies = dockerfileOf('asterisk').stages.at(-1)!.instructions.filter((i) => i.keyword === 'COPY').map(copyParts);
    const etc = copies.find((c) => c.dest === '/etc/asterisk/' && c.sources.includes('docker/asterisk/etc/'));
    expect(etc).toBeDefined();
    expect(path.posix.join('/etc/asterisk', path.relative(repoPath('docker/asterisk/etc'), local))).toBe(target);
    const pjsip = parseIni(readRepo('docker/asterisk/etc/pjsip.conf'), 'asterisk');
    expect(pjsip.flatMap((s) => s.entries).filter(([k]) => k === '#include').map(([, v]) => v)).toContain(path.posix.basename(target!));
  });
});

describe('the Dockerfiles', () => {
  for (const file of ['docker/router/Dockerfile', 'docker/asterisk/Dockerfile']) {
    it(`${file} has no problem dockerfile-utils reports`, () => {
      expect(validate(readRepo(file))).toEqual([]);
    });
  }
  it('the lint can fail: an unknown instruction is reported', () => {
    expect(validate('FROM debian:sid-20251103\nCOPYY a b\n').map((d) => d.message)).toEqual(['Unknown instruction: COPYY']);
  });
});
