import { createServer } from 'node:net';

/**
 * Ports handed out lie below Linux's ephemeral range (32768–60999 by default), never inside it.
 * Several tests kill a server (Redis with kill -9) and start it again on the same port; had the
 * port come from the ephemeral range, an outgoing connection of any process on the machine could
 * be given it as its local port in between, and the restart would fail with EADDRINUSE (seen once
 * in a loaded CI run of the AOF fault test). Outgoing connections never take a port from here.
 */
const LOW = 20_000;
const HIGH = 32_700;

function tryListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A port that was free on `host` (default 127.0.0.1; any of 127/8 works on Linux) a moment ago. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (await tryListen(port, host)) return port;
  }
  throw new Error(`no free port on ${host} between ${LOW} and ${HIGH} after 200 tries`);
}
