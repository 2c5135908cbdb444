/** The MediaStore the configuration names (`media.store`). */
import { resolve } from 'node:path';
import type { AxonConfig } from '../../cluster.config';
import { LocalMediaStore } from './local-store';
import type { MediaStore } from './store';

export async function createMediaStore(config: AxonConfig): Promise<MediaStore> {
  // Imported only when configured: the AWS SDK costs a process ~12 MB (a chunk of its own in dist/).
  if (config.media.store === 's3') return new (await import('./s3-store')).S3MediaStore(config.media.s3);
  // Empty: under the data dir (loadConfig fills it in; a config built in code may not).
  return new LocalMediaStore(config.media.localPath || resolve(config.dataDir, 'media'));
}
