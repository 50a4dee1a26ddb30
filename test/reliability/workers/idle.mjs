// Opens <count> FastAGI connections to 127.0.0.1:<port> that never send a
// byte, at most <inFlight> connects at a time, and holds each until the router
// closes it, <holdMs> passes, or stdin ends (then it closes them all). Runs as its own process so that its file
// descriptor limit can be raised (`ulimit -n`) without touching the test's.
// stdout, one JSON object a line:
//   {"connected": n, "open": n}          once every connect has completed
//   {"done": true, ...figures}           once every connection has closed
import net from 'node:net';

const [portArg, countArg, inFlightArg, holdMsArg] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const inFlight = Number(inFlightArg);
const holdMs = Number(holdMsArg);

const figures = { connected: 0, failed: 0, closedByRouter: 0, closedByUs: 0, maxOpen: 0, bytesReceived: 0, errors: {} };
let open = 0;
const sockets = new Set();
let next = 0;
let closed = 0;
let allClosed;
const everyoneClosed = new Promise((r) => (allClosed = r));
const settle = () => {
  if (++closed === count) allClosed();
};

function connectOne() {
  return new Promise((resolveConnect) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    sockets.add(socket);
    let connected = false;
    let ours = false;
    const timer = setTimeout(() => {
      ours = true;
      socket.destroy();
    }, holdMs);
    socket.once('close', () => {
      if (socket.ourClose) ours = true;
    });
    socket.on('data', (d) => (figures.bytesReceived += d.length));
    socket.on('error', (e) => {
      const code = e.code ?? e.message;
      figures.errors[code] = (figures.errors[code] ?? 0) + 1;
    });
    socket.once('connect', () => {
      connected = true;
      figures.connected++;
      if (++open > figures.maxOpen) figures.maxOpen = open;
      resolveConnect();
    });
    socket.on('close', () => {
      sockets.delete(socket);
      clearTimeout(timer);
      if (connected) {
        open--;
        if (ours) figures.closedByUs++;
        else figures.closedByRouter++;
      } else {
        figures.failed++;
        resolveConnect();
      }
      settle();
    });
  });
}

process.stdin.on('end', () => {
  for (const socket of sockets) {
    socket.ourClose = true;
    socket.destroy();
  }
});
process.stdin.resume();

const started = Date.now();
await Promise.all(
  Array.from({ length: inFlight }, async () => {
    while (next < count) {
      next++;
      await connectOne();
    }
  }),
);
process.stdout.write(JSON.stringify({ connected: figures.connected, open, afterMs: Date.now() - started }) + '\n');
await everyoneClosed;
process.stdout.write(JSON.stringify({ done: true, ...figures, afterMs: Date.now() - started }) + '\n');
process.exit(0);
