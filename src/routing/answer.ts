/**
 * What the router tells the dialplan: a routing decision as the channel
 * variables dialplan/vnum.conf branches on (dialplan/README.md documents
 * them). One definition, used by the router and by `vnum route`.
 *
 * The last check before a number reaches Dial(), so it fails closed: every
 * value must be of the safe alphabet (nothing Asterisk or a shell would
 * interpret), a BRIDGE needs both a target and a presented caller ID (an
 * empty one could let the caller's real number through), and any other
 * status carries no number at all. What fails is answered with ERROR.
 */
import { ROUTE_STATUSES, type RouteDecision, type RouteStatus } from './decide.js';

/** The variables, in the order they are set. */
export const CHANNEL_VARIABLES = Object.freeze({
  status: 'VNUM_STATUS',
  target: 'VNUM_TARGET',
  presentedCallerId: 'VNUM_CLI',
  session: 'VNUM_SESSION',
} as const);

/** Every value the router writes into the dialplan. */
export const SAFE_VALUE = /^[A-Za-z0-9+._:-]{0,64}$/;

export interface RouteAnswer {
  readonly status: RouteStatus;
  /** The real number to dial; '' unless BRIDGE. */
  readonly target: string;
  /** The caller ID to present: the caller's masked number; '' unless BRIDGE. */
  readonly presentedCallerId: string;
  /** The session concerned; '' when none. */
  readonly session: string;
}

export const ERROR_ANSWER: RouteAnswer = Object.freeze({ status: 'ERROR', target: '', presentedCallerId: '', session: '' });

const STATUSES: ReadonlySet<string> = new Set(ROUTE_STATUSES);

function safe(value: unknown): value is string {
  return typeof value === 'string' && SAFE_VALUE.test(value);
}

/**
 * The answer for a decision, or undefined when it fails the checks above
 * (the router then answers ERROR_ANSWER). Throws only if reading the decision
 * throws.
 */
export function answerFor(decision: RouteDecision): RouteAnswer | undefined {
  if (typeof decision !== 'object' || decision === null) return undefined;
  const { status, target, presentedCallerId, session } = decision;
  if (typeof status !== 'string' || !STATUSES.has(status)) return undefined;
  const values = { target: target ?? '', presentedCallerId: presentedCallerId ?? '', session: session ?? '' };
  if (!safe(values.target) || !safe(values.presentedCallerId) || !safe(values.session)) return undefined;
  if (status !== 'BRIDGE') return { status, target: '', presentedCallerId: '', session: values.session };
  if (values.target === '' || values.presentedCallerId === '') return undefined;
  return { status, ...values };
}

/** The answer as `[name, value]` pairs, in CHANNEL_VARIABLES' order. */
export function channelVariables(answer: RouteAnswer): Array<[string, string]> {
  return [
    [CHANNEL_VARIABLES.status, answer.status],
    [CHANNEL_VARIABLES.target, answer.target],
    [CHANNEL_VARIABLES.presentedCallerId, answer.presentedCallerId],
    [CHANNEL_VARIABLES.session, answer.session],
  ];
}
