// GET  /_matrix/key/v2/query/{serverName}
// GET  /_matrix/key/v2/query/{serverName}/{keyId} (before Matrix 1.6)
// POST /_matrix/key/v2/query
/**
 * The notary endpoints: other servers' key documents as we fetched them (directly, from the
 * server itself), each countersigned by us, as canonical JSON. Ours is answered from memory.
 * A server we cannot get keys for is left out of `server_keys` (spec: the answer lists what the
 * notary could find). No authentication, as for every key endpoint.
 */
import { errors, MatrixError } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { canonicalJson, type JsonObject } from '../../protocol/json';
import { buildNotaryResponse, parseNotaryQuery } from '../../protocol/server-keys';
import { isValidFederationServerName } from '../../protocol/server-names';
import type { FederationContext } from './context';

/** More servers in one query than this is not a key look-up we help with. */
const MAX_SERVERS_PER_QUERY = 100;

export function registerKeyQueryRoutes(front: Front, ctx: FederationContext): void {
  const answer = async (wanted: Map<string, number | undefined>) => {
    const docs: JsonObject[] = [];
    await Promise.all(
      [...wanted].map(async ([serverName, minimumValidUntilTs]) => {
        if (!isValidFederationServerName(serverName)) return;
        try {
          const doc = await ctx.keyStore.documentForNotary(serverName, minimumValidUntilTs);
          if (doc) docs.push(doc);
        } catch (err) {
          ctx.log.warn({ err, destination: serverName }, 'notary: key look-up failed');
        }
      }),
    );
    return { rawJson: canonicalJson(buildNotaryResponse(docs, ctx.config.serverName, ctx.own.keys)) };
  };

  const getOne = async (req: Request) => {
    const raw = req.query.minimum_valid_until_ts;
    if (raw !== undefined && !/^[0-9]{1,16}$/.test(raw)) throw errors.invalidParam('minimum_valid_until_ts must be an integer');
    return answer(new Map([[req.params.serverName!, raw === undefined ? undefined : Number(raw)]]));
  };
  front.route('GET', '/_matrix/key/v2/query/:serverName', getOne);
  // The key id in the path was dropped in Matrix 1.6; servers older than that still send it, and
  // Synapse still answers them (with the whole document): so do we.
  front.route('GET', '/_matrix/key/v2/query/:serverName/:keyId', getOne);

  front.route('POST', '/_matrix/key/v2/query', async (req) => {
    const parsed = parseNotaryQuery(req.json());
    if (!parsed.ok) throw new MatrixError(400, parsed.errcode, parsed.error);
    if (parsed.query.size > MAX_SERVERS_PER_QUERY) throw errors.badJson(`At most ${MAX_SERVERS_PER_QUERY} servers per query`);
    // The latest minimum asked for any key of a server is the one the document must meet.
    const wanted = new Map<string, number | undefined>();
    for (const [serverName, byKey] of parsed.query) {
      const mins = [...byKey.values()].filter((v): v is number => v !== undefined);
      wanted.set(serverName, mins.length ? Math.max(...mins) : undefined);
    }
    return answer(wanted);
  });
}
