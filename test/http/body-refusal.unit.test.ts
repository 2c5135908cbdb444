/**
 * Answers given while the request body is still arriving (src/http/server.ts, LINGER_MAX_BYTES):
 * a 413 for a body over the limit — announced by Content-Length, or passed while a chunked body
 * streams — and a handler's answer before its upload has arrived. The client must get the answer
 * (closing a socket it still writes to makes the kernel reset the connection, which can destroy
 * the answer before it is read: a client then sees ECONNRESET, not 413), and the connection stays
 * usable for the next request, because the rest of the body is read and dropped.
 */
import { Agent, request } from 'node:http';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Front, type Request } from '../../src/http/server';
import { MatrixError } from '../../src/http/errors';

const MAX_BODY = 64 * 1024;
const MAX_UPLOAD = 256 * 1024;

interface Answer {
  status: number;
  body: string;
  reused: boolean;
}

/** One request on `agent`: headers, then the body in 16 kB writes as fast as the socket takes them. */
function send(agent: Agent, port: number, path: string, bytes: number, chunked: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', Authorization: 'Bearer t' };
    if (chunked) headers['Transfer-Encoding'] = 'chunked';
    else headers['Content-Length'] = String(bytes);
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    let sent = 0;
    const write = () => {
      while (sent < bytes) {
        const n = Math.min(16 * 1024, bytes - sent);
        sent += n;
        if (!req.write(randomBytes(n))) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

describe('answers given while the body is still arriving', () => {
  let front: Front;
  let port: number;

  beforeAll(async () => {
    front = new Front({ host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), maxBodyBytes: MAX_BODY });
    front.route('POST', '/json', (req: Request) => ({ body: { bytes: req.body.length } }));
    front.route(
      'POST',
      '/upload',
      async (req: Request) => {
        let bytes = 0;
        for await (const chunk of req.bodyStream!) bytes += chunk.length;
        return { body: { bytes } };
      },
      { streamBody: { maxBytes: MAX_UPLOAD } },
    );
    // Refuses before reading its upload (as an upload without a valid token is).
    front.route(
      'POST',
      '/upload-refused',
      () => {
        throw new MatrixError(401, 'M_UNKNOWN_TOKEN', 'Unknown access token');
      },
      { streamBody: { maxBytes: MAX_UPLOAD } },
    );
    port = await front.listen();
  });

  afterAll(() => front.close());

  const cases: [string, string, number, boolean, number, string][] = [
    ['a Content-Length over the limit, the body sent at once', '/json', 4 * MAX_BODY, false, 413, 'M_TOO_LARGE'],
    ['a chunked body passing the limit', '/json', 4 * MAX_BODY, true, 413, 'M_TOO_LARGE'],
    ['an upload announced over its limit, the body sent at once', '/upload', 4 * MAX_UPLOAD, false, 413, 'M_TOO_LARGE'],
    ['a chunked upload passing its limit', '/upload', 4 * MAX_UPLOAD, true, 413, 'M_TOO_LARGE'],
    ['an upload refused before its body arrived', '/upload-refused', MAX_UPLOAD, false, 401, 'M_UNKNOWN_TOKEN'],
    ['a chunked upload refused before its body arrived', '/upload-refused', MAX_UPLOAD, true, 401, 'M_UNKNOWN_TOKEN'],
  ];

  it.each(cases)('%s: the client gets the answer, and its connection serves the next request', async (_name, path, bytes, chunked, status, errcode) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let round = 0; round < 10; round++) {
        const refused = await send(agent, port, path, bytes, chunked);
        expect(refused.status).toBe(status);
        expect(JSON.parse(refused.body).errcode).toBe(errcode);
        // The same socket (one per agent) carries the next request, which is served whole.
        const next = await send(agent, port, '/json', 1000, false);
        expect(next.status).toBe(200);
        expect(JSON.parse(next.body)).toEqual({ bytes: 1000 });
        expect(next.reused).toBe(true);
      }
    } finally {
      agent.destroy();
    }
  });

  it('bodies within the limits are still served, streamed and buffered', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(JSON.parse((await send(agent, port, '/upload', MAX_UPLOAD, true)).body)).toEqual({ bytes: MAX_UPLOAD });
      expect(JSON.parse((await send(agent, port, '/json', MAX_BODY, true)).body)).toEqual({ bytes: MAX_BODY });
    } finally {
      agent.destroy();
    }
  });
});
