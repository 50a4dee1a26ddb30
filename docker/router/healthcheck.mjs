// Health check of the router image: can a TCP connection reach `vnum serve`?
// Exit 0 when it connects, 1 otherwise (refused, timed out). It sends nothing:
// the router drops a connection that closes before its FastAGI environment
// without a log line when the address is allowed (VNUM_AGI_ALLOW includes
// 127.0.0.1, as the image's default does).
//
// A stopgap until `vnum health` exists (issue 6: router, database, AMI).
import { connect } from 'node:net';

const port = Number(process.env.VNUM_AGI_PORT ?? '4573');
const host = process.env.VNUM_HEALTHCHECK_HOST ?? '127.0.0.1';
const socket = connect({ host, port });
const fail = (why) => {
  process.stderr.write(`vnum router not reachable on ${host}:${port}: ${why}\n`);
  process.exit(1);
};
socket.setTimeout(3000, () => fail('timed out'));
socket.once('error', (error) => fail(error.code ?? error.message));
socket.once('connect', () => {
  socket.end();
  process.exit(0);
});
