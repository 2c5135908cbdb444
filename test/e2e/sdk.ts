/** matrix-js-sdk for the end-to-end tests: clients that keep the SDK's debug chatter out of the test output. */
import { createClient as sdkClient, type ICreateClientOpts, type MatrixClient } from 'matrix-js-sdk';
import type { Logger } from 'matrix-js-sdk/lib/logger';

/** The SDK logs every request at debug level; keep its warnings and errors only. */
export const quietLogger: Logger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (...m: unknown[]) => console.warn(...m),
  error: (...m: unknown[]) => console.error(...m),
  getChild: () => quietLogger,
};

export function createClient(opts: ICreateClientOpts): MatrixClient {
  return sdkClient({ ...opts, logger: quietLogger });
}
