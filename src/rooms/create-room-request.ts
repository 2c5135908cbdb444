/**
 * The body of `POST /createRoom` (create_room.yaml), checked field by field before anything is
 * created: a field of the wrong JSON type is 400 M_BAD_JSON (Synapse's code for type errors in
 * this body, e.g. a non-string `room_version`), so a bad request never leaves a half-made room
 * behind. Pure: no I/O; whether an alias is free is asked by the caller.
 */
import { MatrixError, errors } from '../http/errors';
import { isValidUserId } from '../protocol/identifiers';
import { isJsonObject, utf8Length, type JsonObject, type JsonValue } from '../protocol/json';
import { parsePowerLevel } from '../protocol/power-levels';
import { getRoomVersion, type RoomVersion } from '../protocol/room-versions';
import { optString } from '../http/params';

export type Preset = 'private_chat' | 'trusted_private_chat' | 'public_chat';

export interface PresetState {
  join_rule: string;
  history_visibility: string;
  guest_access: string;
  invite: number;
}

/** The presets' state (create_room.yaml's table); `invite`: the power level needed to invite. */
export const PRESETS: Readonly<Record<Preset, PresetState>> = {
  private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join', invite: 0 },
  trusted_private_chat: { join_rule: 'invite', history_visibility: 'shared', guest_access: 'can_join', invite: 0 },
  public_chat: { join_rule: 'public', history_visibility: 'shared', guest_access: 'forbidden', invite: 50 },
};

export interface StateTemplate {
  type: string;
  state_key: string;
  content: JsonObject;
}

export interface CreateRoomRequest {
  visibility: 'public' | 'private';
  presetName: Preset;
  preset: PresetState;
  version: RoomVersion;
  /** `creation_content` as given (the caller drops the keys the server sets). */
  creation: JsonObject;
  plOverride: JsonObject | undefined;
  invites: string[];
  /** How many `invite_3pid` entries (each checked). */
  threepidInvites: number;
  isDirect: boolean;
  name: string | undefined;
  topic: string | undefined;
  initialState: StateTemplate[];
  /** `#room_alias_name:serverName`, or null. */
  alias: string | null;
}

/** Alias localparts: no `:` (it separates the server) and no whitespace or control characters. */
const ALIAS_LOCALPART = /^[^:\s\u0000-\u001f#]+$/;

/** The named levels of m.room.power_levels (integers). */
const NAMED_LEVELS = ['ban', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users_default'] as const;

export function parseCreateRoomRequest(body: JsonObject, opts: { serverName: string; defaultRoomVersion: string; creator: string }): CreateRoomRequest {
  const visibility = optString(body, 'visibility') ?? 'private';
  if (visibility !== 'public' && visibility !== 'private') throw errors.badJson('visibility must be "public" or "private"');
  const presetName = optString(body, 'preset') ?? (visibility === 'public' ? 'public_chat' : 'private_chat');
  // Own keys only: `"preset": "toString"` is not a preset.
  if (!Object.prototype.hasOwnProperty.call(PRESETS, presetName)) throw errors.badJson(`Unknown preset ${JSON.stringify(presetName)}`);
  const versionId = optString(body, 'room_version') ?? opts.defaultRoomVersion;
  const version = getRoomVersion(versionId);
  if (!version) throw new MatrixError(400, 'M_UNSUPPORTED_ROOM_VERSION', `Room version ${JSON.stringify(versionId)} is not supported`);

  const creation = objectField(body, 'creation_content') ?? {};
  checkCreationContent(creation, version);
  const plOverride = objectField(body, 'power_level_content_override');
  if (plOverride) checkPowerLevelOverride(plOverride, version, opts.creator);

  const invites: string[] = [];
  if (body.invite !== undefined) {
    if (!Array.isArray(body.invite)) throw errors.badJson('invite must be a list of user ids');
    for (const u of body.invite) {
      if (typeof u !== 'string' || !isValidUserId(u)) throw errors.badJson('invite must be a list of user ids');
      invites.push(u);
    }
  }
  let threepidInvites = 0;
  if (body.invite_3pid !== undefined) {
    if (!Array.isArray(body.invite_3pid)) throw errors.badJson('invite_3pid must be a list');
    for (const i of body.invite_3pid) {
      if (!isJsonObject(i)) throw errors.badJson('invite_3pid entries must be objects');
      checkThreepidInvite(i);
    }
    threepidInvites = body.invite_3pid.length;
  }
  if (body.is_direct !== undefined && typeof body.is_direct !== 'boolean') throw errors.badJson('is_direct must be a boolean');
  const name = optString(body, 'name');
  const topic = optString(body, 'topic');

  const initialState: StateTemplate[] = [];
  if (body.initial_state !== undefined) {
    if (!Array.isArray(body.initial_state)) throw errors.badJson('initial_state must be a list of state events');
    for (const s of body.initial_state) {
      if (!isJsonObject(s) || typeof s.type !== 'string' || !isJsonObject(s.content as JsonValue) || (s.state_key !== undefined && typeof s.state_key !== 'string')) {
        throw errors.badJson('initial_state entries need a type, content and optional string state_key');
      }
      // The room's create event is made from creation_content; another one would be refused by
      // the authorization rules after the room exists.
      if (s.type === 'm.room.create') throw errors.badJson('initial_state cannot hold m.room.create; use creation_content');
      initialState.push({ type: s.type, state_key: (s.state_key as string | undefined) ?? '', content: s.content as JsonObject });
    }
  }

  let alias: string | null = null;
  const aliasName = optString(body, 'room_alias_name');
  if (aliasName !== undefined) {
    if (!ALIAS_LOCALPART.test(aliasName)) throw new MatrixError(400, 'M_INVALID_PARAM', 'room_alias_name must be an alias localpart');
    alias = `#${aliasName}:${opts.serverName}`;
    if (utf8Length(alias) > 255) throw new MatrixError(400, 'M_INVALID_PARAM', 'The alias is too long');
  }

  return {
    visibility, presetName: presetName as Preset, preset: PRESETS[presetName as Preset], version, creation, plOverride, invites, threepidInvites,
    isDirect: body.is_direct === true, name, topic, initialState, alias,
  };
}

/**
 * `creation_content`: the keys the m.room.create schema types. `room_version` and `creator` are
 * the server's (overwritten, so not checked); `additional_creators` is checked where rule 1.4
 * reads it (v12), so a bad list is 400 here rather than a refused create event (issue 17).
 */
function checkCreationContent(c: JsonObject, version: RoomVersion): void {
  if (c.type !== undefined && typeof c.type !== 'string') throw errors.badJson('creation_content.type must be a string (a room type)');
  if (c['m.federate'] !== undefined && typeof c['m.federate'] !== 'boolean') throw errors.badJson('creation_content.m.federate must be a boolean');
  if (version.privilegedCreators && c.additional_creators !== undefined) {
    const ac = c.additional_creators;
    if (!Array.isArray(ac) || !ac.every((u) => typeof u === 'string' && isValidUserId(u))) throw errors.badJson('creation_content.additional_creators must be a list of user ids');
  }
}

/**
 * `power_level_content_override`: every level must be one the room version reads as a power
 * level (integers; v1–9 also integer strings), or the authorization rules would refuse the
 * power levels event — or ignore the value — after the room exists. Before v12, a `users` that
 * leaves the creator out would take the creator's power away before the rest of the room is
 * set up: refused up front as Synapse does (400, its message and errcode).
 */
function checkPowerLevelOverride(pl: JsonObject, version: RoomVersion, creator: string): void {
  checkPowerLevelsContent(pl, version, 'power_level_content_override');
  if (pl.users !== undefined) {
    const users = pl.users as JsonObject;
    if (!version.privilegedCreators && !Object.prototype.hasOwnProperty.call(users, creator)) {
      throw new MatrixError(400, 'M_UNKNOWN', `Not a valid power_level_content_override: 'users' did not contain ${creator}`);
    }
  }
}

/**
 * An `m.room.power_levels` content a client sends (createRoom's override, `PUT /state`): every
 * level one the room version reads as a power level, `users` keyed by user ids. Malformed
 * levels are bad input (400 M_BAD_JSON, as Synapse answers), not an authorization failure.
 */
export function checkPowerLevelsContent(pl: JsonObject, version: RoomVersion, path: string): void {
  const isLevel = (v: JsonValue | undefined) => parsePowerLevel(v, version) !== undefined;
  for (const key of NAMED_LEVELS) {
    if (pl[key] !== undefined && !isLevel(pl[key])) throw errors.badJson(`${path}.${key} must be an integer`);
  }
  for (const key of ['events', 'notifications'] as const) {
    const map = pl[key];
    if (map === undefined) continue;
    if (!isJsonObject(map) || !Object.values(map).every(isLevel)) throw errors.badJson(`${path}.${key} must map to integers`);
  }
  if (pl.users !== undefined) {
    const users = pl.users;
    if (!isJsonObject(users) || !Object.entries(users).every(([u, v]) => isValidUserId(u) && isLevel(v))) {
      throw errors.badJson(`${path}.users must map user ids to integers`);
    }
  }
}

/**
 * A third-party invite's fields (`POST /rooms/{id}/invite` with a medium and address, or an
 * `invite_3pid` entry of createRoom): Synapse's checks and messages.
 */
export function checkThreepidInvite(body: JsonObject): void {
  for (const k of ['medium', 'address']) if (typeof body[k] !== 'string') throw errors.badJson(`${k} must be a string`);
  if (typeof body.id_server !== 'string' || typeof body.id_access_token !== 'string') {
    throw new MatrixError(400, 'M_MISSING_PARAM', '`id_server` and `id_access_token` are required when doing 3pid invite');
  }
}

function objectField(body: JsonObject, key: string): JsonObject | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!isJsonObject(v)) throw errors.badJson(`${key} must be an object`);
  return v;
}
