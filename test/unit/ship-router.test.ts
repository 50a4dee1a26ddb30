/**
 * The router image, without Docker: docker/router/Dockerfile's own steps
 * replayed in a clean temporary folder, and what `npm pack` ships.
 *
 * The replay reads the Dockerfile (dockerfile-ast) and, stage by stage, does
 * what it says: WORKDIR, COPY from this checkout (only what the Dockerfile
 * names), ENV, and every RUN as written, with the image's absolute paths
 * (/src, /tmp, /opt/vnum, /usr/local/bin, /var/lib/vnum) mapped into the
 * temporary folder. Two RUNs are not replayed, named in the test: the build
 * stage's apt-get of compilers (this host has them, checked) and the runtime
 * stage's useradd (the non-root USER is checked from the Dockerfile instead).
 * Then ENTRYPOINT + CMD start the router on a fresh database, the
 * HEALTHCHECK's own command probes it, a call is routed, and SIGTERM stops it.
 *
 * better-sqlite3: with CI=true (or VNUM_SHIP_FROM_SOURCE=1) the install step
 * runs as in an image build with no prebuilt binary reachable: it compiles
 * (~90 s here). Otherwise, to keep `npm test` quick, prebuild-install is
 * handed a local "prebuilt" archive of this checkout's own compiled module
 * (same version, same Node ABI), the path an image build takes when the
 * download works. Either way the test name says which.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { placeCall } from '../support/fake-asterisk.js';
import { copyParts, execForm, filesUnder, parseDockerfile, type DockerStage } from '../support/ship.js';
import { freePort } from '../support/net.js';
import { readRepo, repoPath, repoRoot } from '../support/repo.js';

const DOCKERFILE = 'docker/router/Dockerfile';
const fromSource = process.env.CI === 'true' || process.env.VNUM_SHIP_FROM_SOURCE === '1';
const REPLAY_TIMEOUT_MS = (fromSource ? 15 : 4) * 60_000;

const pkg = JSON.parse(readRepo('package.json')) as {
  version: string;
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  bin: Record<string, string>;
  scripts: Record<string, string>;
};

/** What the package must ship, from the sources: one .js per .ts, the dialplan, the docs. */
function expectedPackFiles(): string[] {
  const compiled = ['src', 'agi'].flatMap((dir) =>
    filesUnder(repoPath(dir), (f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) =>
      path.join('dist', path.relative(repoRoot, f)).replace(/\.ts$/, '.js'),
    ),
  );
  const dialplan = filesUnder(repoPath('dialplan')).map((f) => path.relative(repoRoot, f));
  return [...compiled, ...dialplan, 'README.md', 'package.json', 'docs/operator-guide.md', 'deploy/systemd/vnum.service', 'deploy/systemd/vnum-api.service', 'deploy/systemd/vnum-sync.service', 'deploy/systemd/vnum-sync.timer', 'deploy/systemd/vnum-webhooks.service'].sort();
}

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  const result = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, ...options });
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

function packList(cwd: string): string[] {
  const out = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '--loglevel=error'], { cwd }).stdout;
  const [info] = JSON.parse(out) as Array<{ files: Array<{ path: string }> }>;
  return info!.files.map((f) => f.path).sort();
}

/** The product's TypeScript (with its .d.ts for untyped packages): what `npm run build` compiles into dist/. */
function productSources(): string[] {
  return ['src', 'agi'].flatMap((dir) => filesUnder(repoPath(dir), (f) => f.endsWith('.ts'))).map((f) => path.relative(repoRoot, f));
}

describe('npm run build compiles the product only', () => {
  it('its program holds src/ and agi/ and nothing of test/ or bench/', () => {
    const listed = run(repoPath('node_modules/.bin/tsc'), ['-p', 'tsconfig.json', '--listFilesOnly'], { cwd: repoRoot }).stdout
      .split('\n')
      .filter((f) => f !== '' && !f.includes('/node_modules/'))
      .map((f) => path.relative(repoRoot, f))
      .sort();
    expect(listed).toEqual(productSources().sort());
  });

  it('dist/, as the build leaves it (it starts from an empty dist/), holds their JavaScript and source maps and nothing else', () => {
    const built = filesUnder(repoPath('dist')).map((f) => path.relative(repoRoot, f)).sort();
    const expected = productSources()
      .filter((f) => !f.endsWith('.d.ts'))
      .flatMap((f) => [`dist/${f.replace(/\.ts$/, '.js')}`, `dist/${f.replace(/\.ts$/, '.js.map')}`])
      .sort();
    expect(built).toEqual(expected);
    expect(pkg.scripts.build).toMatch(/rmSync\('dist'/);
  });
});

describe('npm pack ships exactly what is needed', () => {
  it('from this checkout: compiled JS, the dialplan, README, operator guide, systemd units; no tests, bench, sources, maps or cache', () => {
    const files = packList(repoRoot);
    const allowed = [
      /^dist\/(src|agi)\/.+\.js$/,
      /^dialplan\/[^/]+$/,
      /^README\.md$/,
      /^package\.json$/,
      /^docs\/operator-guide\.md$/,
      /^deploy\/systemd\/vnum(-api|-sync|-webhooks)?\.service$/,
      /^deploy\/systemd\/vnum-sync\.timer$/,
    ];
    expect(files.filter((f) => !allowed.some((re) => re.test(f)))).toEqual([]);
    // Everything the sources need is there (a stale dist/ may hold more: the
    // clean build below must match exactly).
    expect(expectedPackFiles().filter((f) => !files.includes(f))).toEqual([]);
    expect(files).toContain(Object.values(pkg.bin)[0]);
  });
});

// --- the replay --------------------------------------------------------------

const dockerfile = parseDockerfile(repoPath(DOCKERFILE));
const buildStage = dockerfile.stages.find((s) => s.name === 'build');
const runtimeStage = dockerfile.stages.at(-1)!;

let root = '';
/** The image's absolute paths, mapped into `root`. */
const MAPPED = ['/src', '/tmp', '/opt/vnum', '/usr/local/bin', '/var/lib/vnum'];
function mapPaths(text: string, into = root): string {
  return text.replace(/(^|[\s=:"])(\/[^\s"':]*)/g, (whole, lead: string, p: string) => {
    const hit = MAPPED.find((m) => p === m || p.startsWith(`${m}/`));
    if (!hit) throw new Error(`the replay has no mapping for the path ${p} (in: ${text.trim()})`);
    return lead + path.join(into, p);
  });
}

const skippedRuns: string[] = [];
let installLog = '';
let stageEnv: NodeJS.ProcessEnv = {};
let binDir = '';
let server: ChildProcess | undefined;
let serverLog = '';

function replayStage(stage: DockerStage, env: NodeJS.ProcessEnv, skip: (run: string) => string | null): NodeJS.ProcessEnv {
  let workdir = root;
  const stageVars: NodeJS.ProcessEnv = {};
  for (const instruction of stage.instructions) {
    switch (instruction.keyword) {
      case 'WORKDIR':
        workdir = mapPaths(instruction.content.trim());
        mkdirSync(workdir, { recursive: true });
        break;
      case 'ENV':
        for (const pair of instruction.args) {
          const eq = pair.indexOf('=');
          stageVars[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        break;
      case 'COPY': {
        const { sources, dest } = copyParts(instruction);
        const target = dest.startsWith('/') ? mapPaths(dest) : path.join(workdir, dest);
        for (const source of sources) {
          if (instruction.flags.from !== undefined) {
            // From another stage of this replay: the same mapped path.
            const from = mapPaths(source);
            if (from !== target) cpSync(from, target, { recursive: true });
            continue;
          }
          const into = dest.endsWith('/') ? path.join(target, path.basename(source)) : target;
          mkdirSync(path.dirname(into), { recursive: true });
          cpSync(repoPath(source), into, { recursive: true });
        }
        break;
      }
      case 'RUN': {
        const why = skip(instruction.content);
        if (why) {
          skippedRuns.push(`${instruction.content.trim().split(/\s+/).slice(0, 2).join(' ')}: ${why}`);
          break;
        }
        const result = spawnSync('sh', ['-ec', mapPaths(instruction.content)], {
          cwd: workdir,
          encoding: 'utf8',
          env: { ...env, ...mapEnv(stageVars) },
          timeout: REPLAY_TIMEOUT_MS,
        });
        installLog += `$ ${instruction.content.trim()}\n${result.stdout}${result.stderr}`;
        if (result.status !== 0) {
          throw new Error(`RUN at ${DOCKERFILE}:${instruction.line} failed (${result.status ?? result.signal}):\n${installLog.slice(-6000)}`);
        }
        break;
      }
      default:
        break; // metadata (EXPOSE, VOLUME, USER, HEALTHCHECK, ...): checked below
    }
  }
  return stageVars;
}

function mapEnv(vars: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(vars)) {
    // The image's Node lives in /usr/local; this host's npm already points
    // node-gyp at its own headers (npm_config_nodedir in its npmrc).
    if (k === 'npm_config_nodedir') continue;
    out[k] = v?.startsWith('/') ? mapPaths(v) : v;
  }
  return out;
}

function localPrebuildDir(): string | null {
  if (fromSource) return null;
  const module = repoPath('node_modules/better-sqlite3/build/Release/better_sqlite3.node');
  const installed = JSON.parse(readRepo('node_modules/better-sqlite3/package.json')) as { version: string };
  if (!existsSync(module) || installed.version !== pkg.dependencies['better-sqlite3']) return null;
  const dir = path.join(root, 'prebuilds');
  mkdirSync(dir, { recursive: true });
  const name = `better-sqlite3-v${installed.version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  run('tar', ['-czf', path.join(dir, name), '-C', repoPath('node_modules/better-sqlite3'), 'build/Release/better_sqlite3.node']);
  return dir;
}

let prebuildDir: string | null = null;

describe.sequential(`router image build steps replayed in a clean folder (better-sqlite3 ${fromSource ? 'compiled from source' : "from a local prebuilt archive of this checkout's module"})`, () => {
  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'vnum-ship-router-'));
    mkdirSync(path.join(root, 'tmp')); // the image has one
    prebuildDir = localPrebuildDir();
    const baseEnv: NodeJS.ProcessEnv = {
      ...process.env,
      // Reuse the npm cache; never prompt or phone home.
      npm_config_prefer_offline: 'true',
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      ...(prebuildDir ? { npm_config_better_sqlite3_local_prebuilds: prebuildDir } : {}),
    };
    delete baseEnv.VNUM_DB;
    delete baseEnv.VNUM_DEFAULT_COUNTRY;
    if (!buildStage) throw new Error(`${DOCKERFILE} has no stage named build`);
    replayStage(buildStage, baseEnv, (cmd) =>
      /^\s*apt-get\b/.test(cmd) ? 'installs the compilers; this host has python3, make and g++ (checked)' : null,
    );
    binDir = path.join(root, 'usr/local/bin');
    mkdirSync(binDir, { recursive: true });
    const runtimeEnv = { ...baseEnv, PATH: `${binDir}:${process.env.PATH}` };
    stageEnv = mapEnv(
      replayStage(runtimeStage, runtimeEnv, (cmd) =>
        /^\s*groupadd\b/.test(cmd) ? 'creates the vnum user; the non-root USER is checked from the Dockerfile' : null,
      ),
    );
  }, REPLAY_TIMEOUT_MS + 60_000);

  afterAll(() => {
    server?.kill('SIGKILL');
    if (root && !process.env.VNUM_SHIP_KEEP) rmSync(root, { recursive: true, force: true });
  });

  it('replays every build and runtime step except the two named, with the compilers present on this host', () => {
    expect(skippedRuns).toHaveLength(2);
    expect(skippedRuns[0]).toMatch(/^apt-get update: /);
    expect(skippedRuns[1]).toMatch(/^groupadd --system: /);
    for (const tool of ['python3', 'make', 'g++']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`]).status, `${tool} on PATH`).toBe(0);
    }
  });

  it('the files the Dockerfile COPYs are enough to build the package: the clean pack equals the sources', () => {
    const tarballs = readdirSync(path.join(root, 'tmp')).filter((f) => f.endsWith('.tgz'));
    expect(tarballs).toEqual([`vnum-${pkg.version}.tgz`]);
    const listed = run('tar', ['-tzf', path.join(root, 'tmp', tarballs[0]!)]).stdout
      .split('\n')
      .filter((l) => l && !l.endsWith('/'))
      .map((l) => l.replace(/^package\//, ''))
      .sort();
    expect(listed).toEqual(expectedPackFiles());
  });

  it('installs production dependencies only, at the lockfile versions', () => {
    const prefix = path.join(root, 'opt/vnum');
    // A scoped package (@fastify/rate-limit) is a folder inside its scope's folder.
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(path.join(prefix, 'node_modules', dep, 'package.json')), dep).toBe(true);
    const lock = JSON.parse(readRepo('package-lock.json')) as { packages: Record<string, { version: string; dev?: boolean }> };
    // A devDependency that a production dependency needs too (ajv-formats, for fastify) is installed
    // as that; the lockfile marks the ones only development needs, and those must be absent.
    for (const dev of Object.keys(pkg.devDependencies).filter((d) => lock.packages[`node_modules/${d}`]?.dev)) {
      expect(existsSync(path.join(prefix, 'node_modules', dev)), `devDependency ${dev} absent`).toBe(false);
    }
    for (const dep of Object.keys(pkg.dependencies)) {
      const installed = JSON.parse(readFileSync(path.join(prefix, 'node_modules', dep, 'package.json'), 'utf8')) as { version: string };
      expect(installed.version, dep).toBe(lock.packages[`node_modules/${dep}`]!.version);
    }
    // No sources, tests or bench in the installed package.
    expect(existsSync(path.join(prefix, 'src'))).toBe(false);
    expect(existsSync(path.join(prefix, 'test'))).toBe(false);
    expect(existsSync(path.join(prefix, 'bench'))).toBe(false);
    // The native module came the way the test name says.
    const compiled = existsSync(path.join(prefix, 'node_modules/better-sqlite3/build/Release/obj.target'));
    expect(compiled).toBe(prebuildDir === null);
    expect(existsSync(path.join(prefix, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
  });

  it('`vnum --version` from the image PATH prints the package version', () => {
    const out = run('vnum', ['--version'], { env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` } }).stdout.trim();
    expect(out).toBe(pkg.version);
    expect(installLog).toContain(`\n${pkg.version}\n`); // the RUN's own `vnum --version`
  });

  it('ENTRYPOINT + CMD serve a fresh database: HEALTHCHECK passes, a call is routed, SIGTERM stops it cleanly', async () => {
    const entry = [
      ...execForm(runtimeStage.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.content),
      ...execForm(runtimeStage.instructions.find((i) => i.keyword === 'CMD')!.content),
    ];
    expect(entry).toEqual(['vnum', 'serve']);
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...stageEnv,
      PATH: `${binDir}:${process.env.PATH}`,
      // The image listens on 0.0.0.0 inside its own network namespace; here
      // that would be every interface of the machine: loopback instead.
      VNUM_AGI_HOST: '127.0.0.1',
      VNUM_AGI_PORT: String(port),
      VNUM_DEFAULT_COUNTRY: 'GB',
    };
    const dbFile = env.VNUM_DB!;
    expect(dbFile).toBe(path.join(root, 'var/lib/vnum/vnum.db'));
    mkdirSync(path.dirname(dbFile), { recursive: true });
    expect(existsSync(dbFile)).toBe(false);

    server = spawn(entry[0]!, entry.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
    server.stderr!.setEncoding('utf8').on('data', (chunk: string) => (serverLog += chunk));
    const deadline = Date.now() + 15_000;
    while (!serverLog.includes('routing from this store')) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`vnum serve did not start:\n${serverLog}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(existsSync(dbFile)).toBe(true);

    // The HEALTHCHECK's own command, as the image runs it: vnum health, which
    // probes the router over FastAGI and reads the database. Docker retries
    // within the start period; so does this (the first status report is
    // written just after the router starts).
    const healthCheck = runtimeStage.instructions.find((i) => i.keyword === 'HEALTHCHECK')!;
    const health = execForm(healthCheck.content.replace(/^CMD\s+/, ''));
    expect(health).toEqual(['vnum', 'health']);
    const healthArgs = health.map((a) => (a.startsWith('/') ? mapPaths(a) : a));
    const checkHealth = () => spawnSync(healthArgs[0]!, healthArgs.slice(1), { env, encoding: 'utf8', timeout: 10_000 });
    let probe = checkHealth();
    for (let tries = 0; probe.status !== 0 && tries < 20; tries++) {
      await new Promise((r) => setTimeout(r, 250));
      probe = checkHealth();
    }
    expect(probe.status, `${probe.stdout}${probe.stderr}`).toBe(0);
    expect(probe.stdout).toMatch(/^router {4}ok {4}127\.0\.0\.1:\d+ answering\ndatabase {2}ok {4}.*\nami {7}ok {4}not configured in vnum serve \(no call log\)\nhealthy\n$/);
    // Docker gives the command --timeout to finish; the probe's own timeout is inside it.
    expect(healthCheck.flags.timeout).toBe('5s');

    // The installed CLI and router share the database: a session, then a call.
    const cli = (args: string[]) => run('vnum', args, { env });
    cli(['pool', 'add', '+442079460001']);
    const session = JSON.parse(cli(['session', 'create', 'ship-1', '+441134960123', '+441614960456', '--json']).stdout) as {
      parties: Array<{ maskedAs: string }>;
    };
    const call = await placeCall(port, { agi_callerid: '+441134960123', agi_extension: session.parties[1]!.maskedAs });
    expect(call.command).toBe(
      `EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=+441614960456,VNUM_CLI=${session.parties[0]!.maskedAs},VNUM_SESSION=ship-1"`,
    );

    // The health check's probe is not worth a warning (level 40+).
    const loud = serverLog
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((r) => r.level >= 40);
    expect(loud).toEqual([]);

    const exited = new Promise<number | null>((resolve) => server!.once('exit', (code) => resolve(code)));
    server.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 10_000))]);
    expect(code).toBe(0);
    expect(serverLog).toContain('vnum router stopped');
    server = undefined;
    const after = spawnSync(healthArgs[0]!, healthArgs.slice(1), { env, encoding: 'utf8', timeout: 10_000 });
    expect(after.status).toBe(1);
  });

  it('runs as a non-root user with the database on a volume, and pins Node 20 in every stage', () => {
    const user = runtimeStage.instructions.filter((i) => i.keyword === 'USER').at(-1)?.content.trim();
    expect(user).toBeDefined();
    expect(user!.split(':')[0]).not.toMatch(/^(root|0)$/);
    const volumes = runtimeStage.instructions.filter((i) => i.keyword === 'VOLUME').flatMap((i) => execForm(i.content));
    const envDb = runtimeStage.instructions
      .filter((i) => i.keyword === 'ENV')
      .flatMap((i) => i.args)
      .find((a) => a.startsWith('VNUM_DB='));
    expect(envDb).toBe('VNUM_DB=/var/lib/vnum/vnum.db');
    expect(volumes).toContain('/var/lib/vnum');
    for (const stage of dockerfile.stages) expect(stage.image).toMatch(/^node:20\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    // The runtime stage gets the installed tree, not the compilers.
    expect(runtimeStage.instructions.some((i) => i.keyword === 'RUN' && /apt-get|g\+\+|npm (ci|install)/.test(i.content))).toBe(false);
  });
});

// Keep the helper honest: a path the replay does not know is an error, not a silent miss.
describe('the replay path mapping', () => {
  it('refuses an absolute path it has no mapping for', () => {
    expect(() => mapPaths('cp x /etc/passwd', '/r')).toThrow(/no mapping for the path \/etc\/passwd/);
    expect(mapPaths('ls /opt/vnum/dist /tmp/vnum-*.tgz /usr/local/bin/vnum', '/r')).toBe(
      'ls /r/opt/vnum/dist /r/tmp/vnum-*.tgz /r/usr/local/bin/vnum',
    );
  });
});
