/** The Asterisk configuration of the real-Asterisk benchmark: its routes, its trunk, its baseline dialplan. */
import { carrierPjsipConf } from '../../test/support/asterisk/asterisk.js';

/** Fixed ports of this benchmark's two sipp carriers (the ports lock covers them with Asterisk's). */
export const SIP = { uac: 5071, uas: 5072, uacMedia: 18000, uasMedia: 19000 } as const;

/**
 * vnum: dialplan/vnum.conf asking vnum serve. static: the baseline, no AGI.
 * floor: the baseline plus one FastAGI call to a bare responder that answers
 * at once (bench/agi-bare.ts), for the answer time only: what any FastAGI
 * router costs Asterisk, so the report can tell vnum's share from it.
 */
export type Route = 'vnum' | 'static' | 'floor';
export const ROUTES: readonly Route[] = ['vnum', 'static', 'floor'];
export const CONTEXT: Record<Route, string> = { vnum: 'vnum-inbound', static: 'bench-static', floor: 'bench-floor' };

/** The header a call carries to take a baseline's way in; none for vnum's. */
export function routeHeaders(route: Route): string[] {
  return route === 'vnum' ? [] : [`X-Bench-Route: ${route}`];
}

/** An endpoint for calls carrying `X-Bench-Route: <route>`, into that route's context. */
function headerRoute(route: Exclude<Route, 'vnum'>): string {
  return `[${route}-in]
type = endpoint
transport = transport-udp
context = ${CONTEXT[route]}
disallow = all
allow = ulaw,alaw
direct_media = no

[${route}-in]
type = identify
endpoint = ${route}-in
match_header = X-Bench-Route: ${route}
`;
}

/** The e2e suite's trunk towards this benchmark's far end, and the baselines' ways in (same trunk settings, their own contexts). */
export const PJSIP_CONF = carrierPjsipConf({
  contactPort: SIP.uas,
  userAgent: 'vnum-bench',
  // Calls marked X-Bench-Route: static or floor are the baselines'; the rest are the carrier's.
  global: ['endpoint_identifier_order = header,ip'],
  extra: `\n${headerRoute('static')}\n${headerRoute('floor')}`,
});

/**
 * The baseline: the same call without vnum. The caller ID a masked call
 * presents, then Dial through the same trunk to the same far end. No router,
 * no checks. Appended to a copy of dialplan/vnum.conf, whose own contexts are
 * untouched.
 */
export const STATIC_DIALPLAN = `

; ---- bench/asterisk/config.ts: the baseline, no AGI --------------------------
[bench-static]
exten => _[+0-9].,1,Set(CALLERID(num)=+442079460001)
 same => n,Set(CALLERID(name)=+442079460001)
 same => n,Dial(PJSIP/\${EXTEN}@carrier,60)
 same => n,Hangup()

; The FastAGI floor: the baseline plus one FastAGI call to a responder that
; answers at once, bounded as vnum.conf bounds its router.
[bench-floor]
exten => _[+0-9].,1,Set(AGIEXITONHANGUP=yes)
 same => n,Set(TIMEOUT(absolute)=3)
 same => n,AGI(\${GLOBAL(BENCH_FLOOR_AGI_URL)})
 same => n,Set(TIMEOUT(absolute)=0)
 same => n,Set(CALLERID(num)=+442079460001)
 same => n,Set(CALLERID(name)=+442079460001)
 same => n,Dial(PJSIP/\${EXTEN}@carrier,60)
 same => n,Hangup()
`;
