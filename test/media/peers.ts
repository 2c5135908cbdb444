/**
 * Real S3-compatible servers for the media store tests: s3rver (npm; checks the request
 * signature against its credentials) in this process, and moto's server (PyPI `moto[server]`,
 * installed by scripts/lib/ensure.sh's ensure_moto into $AXON_PEERS_DIR/moto-venv) as a child
 * process. Each is started on a free loopback port with a fresh bucket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import type { S3StoreOptions } from '../../src/media/s3-store';
import { freePort } from '../setup/free-port';

export interface S3Peer {
  name: string;
  options: S3StoreOptions;
  stop(): Promise<void>;
}

export async function startS3rver(): Promise<S3Peer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'axon-s3rver-'));
  const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: 'media', configs: [] }] });
  await server.run();
  return {
    name: 's3rver',
    // s3rver's fixed credentials: a request signed with other ones is refused.
    options: { endpoint: `http://127.0.0.1:${port}`, bucket: 'media', region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true, prefix: 'axon/' },
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function motoServerPath(): string {
  return join(process.env.AXON_PEERS_DIR ? resolve(process.env.AXON_PEERS_DIR) : resolve('.peers'), 'moto-venv', 'bin', 'moto_server');
}

export function motoInstalled(): boolean {
  return existsSync(motoServerPath());
}

export async function startMoto(): Promise<S3Peer> {
  const port = await freePort();
  const child: ChildProcess = spawn(motoServerPath(), ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited: ${stderr}`);
    try {
      const r = await fetch(`${endpoint}/moto-api/`);
      if (r.status < 500) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`moto_server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const options: S3StoreOptions = { endpoint, bucket: 'media', region: 'us-east-1', accessKeyId: 'moto-key', secretAccessKey: 'moto-secret', forcePathStyle: true, prefix: '' };
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'moto-key', secretAccessKey: 'moto-secret' } });
  await client.send(new CreateBucketCommand({ Bucket: 'media' }));
  client.destroy();
  return {
    name: 'moto',
    options,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    },
  };
}
