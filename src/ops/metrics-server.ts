/**
 * The metrics port: a small node:http server (not the uWS front) on `metrics.host:metrics.port`,
 * apart from the client and federation listeners so that it is never exposed with them. It answers
 * `GET /metrics` with every metric of this process (src/ops/metrics.ts, Prometheus text format
 * 0.0.4), and hands every other request to the `handlers` it was given, in order (the operator
 * dashboard is served on the same port that way); nothing handled it: 404.
 *
 * node:http here, not uWS: a scrape every few seconds needs no speed, and node:http lets handlers
 * use the ordinary request/response API (server-sent events, streaming pages).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { enableProcessMetrics, registry } from './metrics';

/** Serves one request on the metrics port when it is its own (returns true), else leaves it (false). */
export type MetricsRouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface MetricsServerOptions {
  port: number;
  host: string;
  handlers?: MetricsRouteHandler[];
}

export interface RunningMetricsServer {
  /** The port it listens on (the one asked for, or the one the system chose for 0). */
  port: number;
  host: string;
  close(): Promise<void>;
}

export async function startMetricsServer(o: MetricsServerOptions): Promise<RunningMetricsServer> {
  enableProcessMetrics();
  const handlers = o.handlers ?? [];
  const server = http.createServer((req, res) => {
    void serve(req, res, handlers).catch((e: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(`metrics: ${(e as Error)?.message ?? String(e)}\n`);
      } else res.destroy();
    });
  });
  // A scraper keeps its connection open between scrapes; nothing else long-lived is expected
  // except what handlers stream (their own business).
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    host: o.host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(req: http.IncomingMessage, res: http.ServerResponse, handlers: MetricsRouteHandler[]): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/metrics') {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('Method Not Allowed\n');
      return;
    }
    const body = await registry.metrics();
    res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  for (const handle of handlers) if (await handle(req, res)) return;
  res.writeHead(404, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request: this port serves /metrics and /dashboard' }));
}

/**
 * Start the metrics server when `metrics.port` is set (0: off, null returned). A port in use is
 * waited for, not fatal: in a rolling restart the new front starts beside the old one, which
 * still holds their port until it exits (node 20's http has no SO_REUSEPORT); meanwhile this one
 * serves no metrics and retries every half second. Any other error stops the process.
 */
export async function startConfiguredMetricsServer(metrics: { port: number; host: string }, handlers?: MetricsRouteHandler[], log?: Pick<Logger, 'warn' | 'info'>): Promise<RunningMetricsServer | null> {
  if (!metrics.port) return null;
  const options = { port: metrics.port, host: metrics.host, handlers };
  try {
    const server = await startMetricsServer(options);
    log?.info({ url: `http://${server.host}:${server.port}/metrics` }, 'metrics listening');
    return server;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
  }
  log?.warn({ port: metrics.port }, 'metrics port in use (the process this one replaces?); serving metrics once it is free');
  let running: RunningMetricsServer | null = null;
  let trying = false;
  let closed = false;
  const retry = setInterval(() => {
    if (trying || running || closed) return;
    trying = true;
    startMetricsServer(options).then(
      (server) => {
        trying = false;
        if (closed) return void server.close();
        running = server;
        clearInterval(retry);
        log?.info({ url: `http://${server.host}:${server.port}/metrics` }, 'metrics listening');
      },
      () => {
        trying = false;
      },
    );
  }, 500);
  retry.unref();
  return {
    port: metrics.port,
    host: metrics.host,
    async close() {
      closed = true;
      clearInterval(retry);
      await running?.close();
    },
  };
}
