import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loopback, ports } from '../asterisk/paths.js';
import { parseMessageFile } from './messages.js';
import type { UacResult } from './sipp.js';

/**
 * A caller that types DTMF: sipp as the caller's carrier, offering
 * telephone-event as payload type 96 (what sipp's `play_dtmf` sends: RFC 2833
 * events with fresh timestamps; the DTMF captures sip-tester ships keep their
 * original timestamps, and Asterisk drops any event not later than the last,
 * /work/coord research for issue 14). The scenario is written per call: a
 * play_dtmf string is fixed when sipp loads it.
 *
 * After the answer: the steps (pauses and DTMF strings), then the caller stays
 * until Asterisk hangs up, or for `holdMs` and hangs up itself. One play_dtmf
 * cancels the one still playing: space them by at least digits x 2 x tone.
 */
export type DtmfStep = { pauseMs: number } | { dtmf: string; toneMs?: number };

export interface DtmfCall {
  dialled: string;
  /** From's user part: `anonymous` for a withheld caller. */
  callerUser: string;
  steps: DtmfStep[];
  /** After the steps, how long to stay before hanging up (ms), unless Asterisk hangs up first. */
  holdMs: number;
  timeoutS?: number;
}

const FAILURES = [400, 403, 404, 408, 480, 484, 486, 487, 488, 500, 503, 603];

function step(s: DtmfStep): string {
  if ('pauseMs' in s) return `  <pause milliseconds="${s.pauseMs}"/>`;
  if (!/^[0-9*#A-D]{1,64}$/.test(s.dtmf)) throw new Error(`play_dtmf sends 0-9 * # A-D only, not ${JSON.stringify(s.dtmf)}`);
  return `  <nop><action><exec play_dtmf="${s.dtmf}${s.toneMs ? `,${s.toneMs}` : ''}"/></action></nop>`;
}

export function dtmfScenario(call: DtmfCall): string {
  if (!/^[A-Za-z0-9+]{1,32}$/.test(call.callerUser) || !/^[0-9+]{1,20}$/.test(call.dialled)) throw new Error('caller or dialled number out of shape');
  const from = `<sip:${call.callerUser}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]`;
  const failures = FAILURES.map((c) => `  <recv response="${c}" optional="true" next="refused"/>`).join('\n');
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="vnum dtmf caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:${call.dialled}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${from}
      To: <sip:${call.dialled}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 96
      a=rtpmap:0 PCMU/8000
      a=rtpmap:96 telephone-event/8000
      a=fmtp:96 0-16
      a=sendrecv
    ]]>
  </send>
  <label id="wait"/>
  <recv response="100" optional="true" next="wait"/>
  <recv response="180" optional="true" next="wait"/>
  <recv response="183" optional="true" next="wait"/>
${failures}
  <recv response="200" rrs="true" next="answered">
    <action><ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="peer_to"/></action>
  </recv>

  <label id="answered"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${from}
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
${call.steps.map(step).join('\n')}
  <recv request="BYE" timeout="${call.holdMs}" ontimeout="hangup" next="far_bye"/>

  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${from}
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="done"/>

  <label id="far_bye"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop next="done"/>

  <label id="refused"/>
  <send>
    <![CDATA[
      ACK sip:${call.dialled}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="done"/>
  <timewait milliseconds="50"/>
</scenario>
`;
}

/** Who hung up an answered call: the caller (sipp sent BYE) or Asterisk (sipp received it). */
export interface DtmfResult extends UacResult {
  hungUpBy: 'caller' | 'asterisk' | null;
}

/** Places one DTMF call from carrier-in's port and waits for it to end. */
export async function placeDtmfCall(call: DtmfCall): Promise<DtmfResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vnum-sipp-dtmf-'));
  const scenario = path.join(dir, 'dtmf.xml');
  const messageFile = path.join(dir, 'uac.messages');
  writeFileSync(scenario, dtmfScenario(call));
  const args = [
    `${loopback}:${ports.asteriskSip}`,
    '-sf', scenario,
    '-i', loopback, '-p', String(ports.carrierIn), '-mi', loopback, '-mp', '16000',
    '-nostdin', '-trace_msg', '-message_file', messageFile, '-trace_err', '-error_file', `${messageFile}.errors`,
    '-m', '1', '-timeout', `${call.timeoutS ?? 60}s`, '-timeout_error',
  ];
  const started = Date.now();
  const child = spawn('sipp', args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const messages = existsSync(messageFile) ? parseMessageFile(readFileSync(messageFile, 'utf8')) : [];
  const received = messages.filter((m) => m.direction === 'received');
  const finals = received.filter((m) => m.kind === 'response' && m.status >= 200 && m.cseqMethod === 'INVITE');
  const errors = `${stderr}${existsSync(`${messageFile}.errors`) ? readFileSync(`${messageFile}.errors`, 'utf8') : ''}`;
  if (!process.env.VNUM_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
  const bye = messages.find((m) => m.kind === 'request' && m.method === 'BYE');
  return {
    messages,
    received,
    finalStatus: finals[0]?.status ?? null,
    elapsedMs: Date.now() - started,
    exitCode,
    errors,
    hungUpBy: bye === undefined ? null : bye.direction === 'sent' ? 'caller' : 'asterisk',
  };
}
