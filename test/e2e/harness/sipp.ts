import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loopback, ports } from './paths.js';
import { parseMessageFile, type SipMessage } from './sip-messages.js';

/**
 * sipp as the carrier on both sides of a call.
 *
 * carrier-in (UAC, 127.0.0.1:5061) sends a call to Asterisk with a chosen
 * caller in From; carrier-out (UAS, 127.0.0.1:5062) is the far end Asterisk
 * dials through the trunk. Both record every message (-trace_msg), and the
 * tests read back what each side received.
 */

const FINAL_FAILURES = [
  400, 401, 403, 404, 405, 407, 408, 410, 415, 420, 480, 481, 482, 483, 484, 485, 486, 487, 488, 491,
  500, 501, 502, 503, 504, 580, 600, 603, 604, 606,
];

/** XML text escaping for a value placed inside the scenario (CDATA-safe too). */
function xml(value: string): string {
  return value.replace(/]]>/g, ']]]]><![CDATA[>');
}

export interface UacCall {
  /** The Request-URI user: the DID dialled. */
  dialled: string;
  /** From user part, sent as is (escape it yourself if it needs escaping). */
  callerUser: string;
  /** From display name, sent inside double quotes as is. */
  callerName?: string;
  /** Extra headers for the INVITE (e.g. P-Asserted-Identity, Diversion). */
  extraHeaders?: string[];
  /** How long to stay in the call after the answer before hanging up (ms). */
  holdMs?: number;
  /** sipp gives up after this many seconds. */
  timeoutS?: number;
  /**
   * After the answer, send a re-INVITE with these headers (the caller's
   * carrier changing the asserted identity mid-call).
   */
  reinviteHeaders?: string[];
}

function uacScenario(call: UacCall): string {
  const name = call.callerName === undefined ? '' : `"${call.callerName}" `;
  const extra = (call.extraHeaders ?? []).map((h) => `\n      ${h}`).join('');
  const hold = call.holdMs ?? 300;
  const reinvite = call.reinviteHeaders
    ? `  <pause milliseconds="150"/>
  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${xml(name)}<sip:${xml(call.callerUser)}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 2 INVITE
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70${call.reinviteHeaders.map((h) => `\n      ${xml(h)}`).join('')}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${xml(name)}<sip:${xml(call.callerUser)}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 2 ACK
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>`
    : '';
  const failures = FINAL_FAILURES.map(
    (code) => `  <recv response="${code}" optional="true" next="failed"/>`,
  ).join('\n');
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="vnum carrier-in">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${xml(name)}<sip:${xml(call.callerUser)}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, UPDATE, OPTIONS
      Supported: replaces, timer${xml(extra)}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>

  <label id="wait_final"/>
  <recv response="100" optional="true" next="wait_final"/>
  <recv response="180" optional="true" next="wait_final"/>
  <recv response="181" optional="true" next="wait_final"/>
  <recv response="182" optional="true" next="wait_final"/>
  <recv response="183" optional="true" next="wait_final"/>
  <recv request="UPDATE" optional="true" next="early_update"/>
${failures}
  <recv response="200" rrs="true" next="answered">
    <action>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="peer_to"/>
    </action>
  </recv>

  <label id="early_update"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <nop next="wait_final"/>

  <label id="answered"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${xml(name)}<sip:${xml(call.callerUser)}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 1 ACK
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
${reinvite}

  <!-- sipp applies the timeout of the first recv of a group: the hold time. -->
  <label id="in_call"/>
  <recv request="INVITE" optional="true" timeout="${hold}" ontimeout="hangup" next="reinvite"/>
  <recv request="UPDATE" optional="true" next="mid_update"/>
  <recv request="BYE" next="bye_received"/>

  <label id="reinvite"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>
  <recv request="ACK" next="in_call"/>

  <label id="mid_update"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <nop next="in_call"/>

  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${xml(name)}<sip:${xml(call.callerUser)}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To:[$peer_to]
      Call-ID: [call_id]
      [routes]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="done"/>

  <label id="bye_received"/>
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

  <label id="failed"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
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

export interface UasOptions {
  /**
   * Identity headers the far end adds to its 180 and 200 (a carrier asserting
   * the answering party): e.g. P-Asserted-Identity with the callee's number.
   */
  responseHeaders?: string[];
  /** Send 183 with SDP before 180. */
  earlyMedia?: boolean;
  /** Ring this long before answering (ms). */
  ringMs?: number;
  /**
   * After the answer, send a re-INVITE with these headers: the callee's
   * carrier asserting a new identity mid-call (say, after a transfer).
   */
  reinviteHeaders?: string[];
  /** Instead of answering, reject every call with this final status (e.g. 486). */
  rejectWith?: number;
  /** After the answer (and any re-INVITE), hang up with a BYE after this long (ms): the callee ends the call. */
  hangupAfterMs?: number;
}

/** The far end's scenario (also the real-Asterisk benchmark's, bench/asterisk.ts). */
export function uasScenario(options: UasOptions): string {
  const extra = (options.responseHeaders ?? []).map((h) => `\n      ${h}`).join('');
  const sdp = `v=0
      o=callee 1 [cseq] IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv`;
  const early = options.earlyMedia
    ? `<send>
    <![CDATA[
      SIP/2.0 183 Session Progress
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>${xml(extra)}
      Content-Type: application/sdp
      Content-Length: [len]

      ${sdp}
    ]]>
  </send>`
    : '';
  const reject = options.rejectWith
    ? `<send retrans="500">
    <![CDATA[
      SIP/2.0 ${options.rejectWith} Rejected by +441614960456
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>${xml(extra)}
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="done"/>`
    : '';
  const reinviteExtra = (options.reinviteHeaders ?? []).map((h) => `\n      ${xml(h)}`).join('');
  const reinvite = options.reinviteHeaders
    ? `<pause milliseconds="700"/>
  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:callee@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$remote_party]
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:callee@[local_ip]:[local_port]>
      Max-Forwards: 70${reinviteExtra}
      Content-Type: application/sdp
      Content-Length: [len]

      ${sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:callee@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$remote_party]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:callee@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>`
    : '';
  const hangup =
    options.hangupAfterMs === undefined
      ? ''
      : `<pause milliseconds="${options.hangupAfterMs}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:callee@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$remote_party]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:callee@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="done"/>`;
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="vnum carrier-out">
  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote_party"/>
    </action>
  </recv>
  <Reference variables="remote_party"/>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  ${early}
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>${xml(extra)}
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="${options.ringMs ?? 100}"/>
  ${reject}
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>
      Allow: INVITE, ACK, CANCEL, BYE, UPDATE, OPTIONS${xml(extra)}
      Content-Type: application/sdp
      Content-Length: [len]

      ${sdp}
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  ${reinvite}
  ${hangup}

  <label id="in_call"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="UPDATE" optional="true" next="update"/>
  <recv request="BYE" next="bye"/>

  <label id="reinvite"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:callee@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      ${sdp}
    ]]>
  </send>
  <recv request="ACK" next="in_call"/>

  <label id="update"/>
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
  <nop next="in_call"/>

  <label id="bye"/>
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
  <label id="done"/>
  <timewait milliseconds="50"/>
</scenario>
`;
}

function workDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'vnum-sipp-'));
}

function sippArgs(scenario: string, localPort: number, mediaPort: number, messageFile: string): string[] {
  return [
    '-sf', scenario,
    '-i', loopback,
    '-p', String(localPort),
    '-mi', loopback,
    '-mp', String(mediaPort),
    '-nostdin',
    '-trace_msg', '-message_file', messageFile,
    '-trace_err', '-error_file', `${messageFile}.errors`,
  ];
}

export interface UacResult {
  /** Everything carrier-in saw, in order (sent and received). */
  messages: SipMessage[];
  /** What Asterisk sent to the caller's carrier. */
  received: SipMessage[];
  /** The final response to the INVITE (status code), if any arrived. */
  finalStatus: number | null;
  /** Wall-clock time from process start to exit (ms). */
  elapsedMs: number;
  /** sipp's exit status (0 every call passed; the scenario counts refusals as passes). */
  exitCode: number | null;
  errors: string;
}

/** Places one call from carrier-in and waits for it to end. */
export async function placeCall(call: UacCall): Promise<UacResult> {
  const dir = workDir();
  const scenario = path.join(dir, 'uac.xml');
  const messageFile = path.join(dir, 'uac.messages');
  writeFileSync(scenario, uacScenario(call));
  const args = [
    `${loopback}:${ports.asteriskSip}`,
    ...sippArgs(scenario, ports.carrierIn, 16000, messageFile),
    '-s', call.dialled,
    '-m', '1',
    '-timeout', `${call.timeoutS ?? 20}s`,
    '-timeout_error',
  ];
  const started = Date.now();
  const child = spawn('sipp', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const elapsedMs = Date.now() - started;
  const messages = existsSync(messageFile) ? parseMessageFile(readFileSync(messageFile, 'utf8')) : [];
  const received = messages.filter((m) => m.direction === 'received');
  const finals = received.filter((m) => m.kind === 'response' && m.status >= 200 && m.cseqMethod === 'INVITE');
  const errorFile = `${messageFile}.errors`;
  const errors = `${stderr}${existsSync(errorFile) ? readFileSync(errorFile, 'utf8') : ''}`;
  if (!process.env.VNUM_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
  return {
    messages,
    received,
    finalStatus: finals[0]?.status ?? null,
    elapsedMs,
    exitCode,
    errors,
  };
}

export interface Uas {
  /** Everything carrier-out received so far. */
  received(): SipMessage[];
  /** INVITEs that opened a dialog (re-INVITEs excluded). */
  invites(): SipMessage[];
  stop(): Promise<void>;
}

/** Starts carrier-out: the far end that answers every leg Asterisk dials. */
export async function startUas(options: UasOptions = {}): Promise<Uas> {
  const dir = workDir();
  const scenario = path.join(dir, 'uas.xml');
  const messageFile = path.join(dir, 'uas.messages');
  writeFileSync(scenario, uasScenario(options));
  const child: ChildProcess = spawn('sipp', sippArgs(scenario, ports.carrierOut, 17000, messageFile), {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Ready once it holds its port: the message file exists from start-up on.
  const deadline = Date.now() + 5_000;
  while (!existsSync(messageFile)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`sipp UAS did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  let final: SipMessage[] | null = null;
  const read = (): SipMessage[] =>
    final ?? parseMessageFile(readFileSync(messageFile, 'utf8')).filter((m) => m.direction === 'received');
  return {
    received: read,
    invites: () =>
      read().filter((m) => m.kind === 'request' && m.method === 'INVITE' && !/;\s*tag=/i.test(m.header('To') ?? '')),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGUSR1');
        const timer = new Promise<'t'>((r) => setTimeout(() => r('t'), 3_000));
        if ((await Promise.race([exited, timer])) === 't') {
          child.kill('SIGKILL');
          await exited;
        }
      }
      if (final === null) {
        final = read();
        if (!process.env.VNUM_E2E_KEEP) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
