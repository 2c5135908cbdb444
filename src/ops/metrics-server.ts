/**
 * The operator's HTTP server on its own port (`metrics.port` / `AXON_METRICS_PORT`), apart from the
 * client API's uWS front: plain node:http, since it serves a handful of operators, not clients.
 * Route handlers are tried in order; the first that returns true has answered. Anything else is a
 * 404 Matrix error.
 *
 * This is the minimal server the operator dashboard needs (src/ops/dashboard/); `/metrics` itself
 * (prom-client) comes with the metrics work of issue 20, on the same contract.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Answers a request it knows (returns true) or leaves it to the next handler (false). */
export type MetricsRouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface MetricsServerOptions {
  port: number;
  host: string;
  handlers?: MetricsRouteHandler[];
}

export interface RunningMetricsServer {
  /** The port it listens on (the one asked for, or the kernel's pick for 0). */
  port: number;
  close(): Promise<void>;
}

function answerJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<RunningMetricsServer> {
  const handlers = o.handlers ?? [];
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        for (const handle of handlers) if (await handle(req, res)) return;
        answerJson(res, 404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
      } catch {
        // A handler's bug must not take the process down with it (this port is for operators).
        answerJson(res, 500, { errcode: 'M_UNKNOWN', error: 'Internal server error' });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        // Long-lived dashboard streams would hold close() open: end them.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
