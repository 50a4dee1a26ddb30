/**
 * For a long-running command: resolves with the first SIGTERM or SIGINT
 * (systemd's stop, Ctrl-C), and stops listening for them, so the command can
 * finish its work in flight and exit by itself (`vnum serve`, `vnum webhooks
 * deliver`).
 */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
