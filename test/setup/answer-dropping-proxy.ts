/**
 * A TCP proxy in front of a real Redis for the tests of answers lost after Redis ran the command
 * (test/runtime/faults.redis.test.ts, test/readers/outbox-group-reader.redis.test.ts).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './free-port';

/**
 * A TCP proxy in front of a real Redis that, once armed, forwards the next request carrying
 * `needle` and then drops Redis's answer to it and closes the connection: the command ran in
 * Redis, the client never heard back and (ioredis) sends it again on its next connection.
 */
export function answerDroppingProxy(redisPort: number, needle: string): Promise<{ port: number; server: Server; arm(): void; tripped(): number }> {
  let armed = false;
  let tripped = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(redisPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let tail = '';
    let dropping = false;
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      tail = text.slice(-needle.length);
      if (armed && text.includes(needle)) {
        armed = false;
        dropping = true;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!dropping) {
        client.write(d);
        return;
      }
      tripped++;
      close();
    });
    for (const s of [client, upstream]) {
      s.on('error', close);
      s.on('close', () => {
        sockets.delete(s);
        close();
      });
    }
  });
  return new Promise((resolve) => {
    void freePort().then((port) =>
      server.listen(port, '127.0.0.1', () =>
        resolve({
          port,
          server,
          arm: () => (armed = true),
          tripped: () => tripped,
        }),
      ),
    );
  }).then((p) => {
    const close = server.close.bind(server);
    (server as { close: Server['close'] }).close = (cb?: (err?: Error) => void) => {
      for (const s of sockets) s.destroy();
      return close(cb);
    };
    return p as { port: number; server: Server; arm(): void; tripped(): number };
  });
}
