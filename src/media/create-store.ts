/** The MediaStore the configuration names (`media.store`). */
import { resolve } from 'node:path';
import type { AxonConfig } from '../../cluster.config';
import { LocalMediaStore } from './local-store';
import { S3MediaStore } from './s3-store';
import type { MediaStore } from './store';

export function createMediaStore(config: AxonConfig): MediaStore {
  if (config.media.store === 's3') return new S3MediaStore(config.media.s3);
  // Empty: under the data dir (loadConfig fills it in; a config built in code may not).
  return new LocalMediaStore(config.media.localPath || resolve(config.dataDir, 'media'));
}
