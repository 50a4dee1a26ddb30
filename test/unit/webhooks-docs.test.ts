/**
 * The README's verification snippets (Node and Python), run exactly as
 * written there against requests vnum signs: a receiver that copies them
 * accepts vnum's requests, during a rotation too, and refuses a changed body,
 * another secret and an old timestamp.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { signatureHeader, verifySignature } from '../../src/webhooks/signature.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const SECRET = '3f1b0c9e6a2d47c58e0b7d12a9f4c6e83b5d0a7f1e2c4d6b8a9f0e1d2c3b4a59';
const OLD = 'whsec_0123456789abcdefghijklmnopqrstuvwxyz';
const BODY = '{"id":"evt_698c730b7c6dcc36c39277be6e16e315","type":"call.ended","session":"order-1001","data":{"call":{"caller":"first","hangupCauseText":"Normal Clearing é"}}}';
const now = () => Math.floor(Date.now() / 1000);

/** The fenced block of `language` that contains `marker`. */
function snippet(language: string, marker: string): string {
  const blocks = [...README.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
  const found = blocks.find((b) => b.includes(marker));
  if (!found) throw new Error(`README has no ${language} block with ${marker}`);
  return found;
}

/** [header, body, secrets the receiver holds, expected verdict] */
function cases(): Array<[string, string, string[], boolean]> {
  return [
    [signatureHeader(BODY, [SECRET], now()), BODY, [SECRET], true],
    [signatureHeader(BODY, [SECRET, OLD], now()), BODY, [OLD], true],
    [signatureHeader(BODY, [SECRET], now()), BODY.replace('first', 'second'), [SECRET], false],
    [signatureHeader(BODY, [SECRET], now()), BODY, [OLD], false],
    [signatureHeader(BODY, [SECRET], now() - 301), BODY, [SECRET], false],
    ['', BODY, [SECRET], false],
  ];
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-webhook-docs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('the Node snippet, as written in the README', async () => {
  const file = join(dir, 'verify.mjs');
  writeFileSync(file, snippet('js', 'function verifyVnumSignature'));
  const { verifyVnumSignature } = (await import(pathToFileURL(file).href)) as {
    verifyVnumSignature: (header: string, body: string, secrets: string[]) => boolean;
  };
  for (const [header, body, secrets, expected] of cases()) expect(verifyVnumSignature(header, body, secrets), header).toBe(expected);
});

it('the Python snippet, as written in the README', (context) => {
  // Skipped, and said so, only where python3 is missing and CI is not set: under CI it must run.
  if (spawnSync('python3', ['--version']).error && process.env.CI !== 'true') context.skip('python3 not found');
  const program = `${snippet('python', 'def verify_vnum_signature')}
import json, sys
for header, body, secrets, expected in json.load(sys.stdin):
    got = verify_vnum_signature(header, body.encode(), secrets)
    print("ok" if got == expected else f"WRONG {header} {expected}")
`;
  const run = spawnSync('python3', ['-c', program], { input: JSON.stringify(cases()), encoding: 'utf8' });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim().split('\n')).toEqual(cases().map(() => 'ok'));
});

it('the README\'s example header is the signature of its example body (sent on one line) with its example secret', () => {
  const example = README.match(/```json\n(\{\n  "id": "evt_[\s\S]*?)```/)![1]!;
  const header = /^Vnum-Signature: (.*)$/m.exec(README)![1]!;
  const t = Number(/t=(\d+)/.exec(header)![1]);
  expect(verifySignature(header, JSON.stringify(JSON.parse(example)), [SECRET], t)).toEqual({ ok: true, timestamp: t });
  expect(README).toContain(SECRET);
});
