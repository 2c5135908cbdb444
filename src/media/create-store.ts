/** The MediaStore the configuration names (`media.store`). */
import type { MediaConfig } from '../../cluster.config';
import { LocalMediaStore } from './local-store';
import { S3MediaStore } from './s3-store';
import type { MediaStore } from './store';

export function createMediaStore(config: MediaConfig): MediaStore {
  if (config.store === 's3') return new S3MediaStore(config.s3);
  return new LocalMediaStore(config.localPath);
}
