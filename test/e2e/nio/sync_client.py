"""A matrix-nio client for test/e2e/nio-sync.e2e.test.ts: a second, independent /sync consumer.

Usage: sync_client.py HOMESERVER USER_ID DEVICE_ID ACCESS_TOKEN FINAL_BODY [DEADLINE_SECONDS]

Logs in with the given token, does a first sync, then long-polls sync(timeout=...) and prints one
JSON line per thing nio reports: {"kind": "ready"} once the first sync is done, then "invite"
(which it accepts with join), "joined", "message" (body, event_id), "name", "member" and "left".
On the message whose body is FINAL_BODY it leaves the room (room_leave) and syncs on until the
leave comes back in rooms.leave; then it exits 0. Exits 2 if the deadline passes first.
"""
import asyncio
import json
import sys
import time

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinError,
    RoomMemberEvent,
    RoomMessageText,
    RoomLeaveError,
    RoomNameEvent,
    SyncError,
)


def emit(kind, **fields):
    print(json.dumps({"kind": kind, **fields}), flush=True)


async def main(homeserver, user_id, device_id, token, final_body, deadline_s):
    # No encryption: nothing here is encrypted, and it keeps nio from wanting an olm store on disk.
    client = AsyncClient(homeserver, user_id, device_id=device_id,
                         config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False))
    client.restore_login(user_id, device_id, token)
    deadline = time.monotonic() + deadline_s
    seen_final = False
    left = False
    joined_rooms = set()

    # A timeline limit above the dozen events the test sends at once: with the default (10), a sync
    # that starts after all of them were sent (this process slow on a loaded machine) is rightly
    # answered `limited` with the last 10, and the first messages are in the gap (seen once in CI).
    timeline_filter = {"room": {"timeline": {"limit": 50}}}

    async def sync_before_deadline(**kwargs):
        # nio retries failed requests on its own, without end; the deadline must hold regardless.
        return await asyncio.wait_for(client.sync(sync_filter=timeline_filter, **kwargs), timeout=max(0.1, deadline - time.monotonic()))

    try:
        response = await sync_before_deadline(timeout=0, full_state=True)
        if isinstance(response, SyncError):
            emit("error", where="first sync", message=response.message, status=response.status_code)
            return 1
        emit("ready", next_batch=response.next_batch)
        while True:
            for room_id, info in response.rooms.invite.items():
                for event in info.invite_state:
                    if isinstance(event, InviteMemberEvent) and event.state_key == user_id and event.membership == "invite":
                        emit("invite", room_id=room_id, sender=event.sender)
                        joined = await client.join(room_id)
                        if isinstance(joined, JoinError):
                            emit("error", where="join", message=joined.message, status=joined.status_code)
                            return 1
            for room_id, info in response.rooms.join.items():
                if room_id not in joined_rooms:
                    joined_rooms.add(room_id)
                    emit("joined", room_id=room_id)
                for event in info.timeline.events:
                    if isinstance(event, RoomMessageText):
                        emit("message", room_id=room_id, body=event.body, event_id=event.event_id)
                        if event.body == final_body and not seen_final:
                            seen_final = True
                            left_response = await client.room_leave(room_id)
                            if isinstance(left_response, RoomLeaveError):
                                emit("error", where="leave", message=left_response.message,
                                     status=left_response.status_code)
                                return 1
                    elif isinstance(event, RoomNameEvent):
                        emit("name", room_id=room_id, name=event.name, event_id=event.event_id)
                    elif isinstance(event, RoomMemberEvent):
                        emit("member", room_id=room_id, state_key=event.state_key, membership=event.membership,
                             event_id=event.event_id)
            for room_id, info in response.rooms.leave.items():
                membership = next((e.membership for e in info.timeline.events
                                   if isinstance(e, RoomMemberEvent) and e.state_key == user_id), None)
                emit("left", room_id=room_id, membership=membership)
                left = True
            if seen_final and left:
                return 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                emit("deadline", seconds=deadline_s, seen_final=seen_final, left=left)
                return 2
            poll_ms = int(min(5.0, remaining) * 1000)
            response = await sync_before_deadline(timeout=poll_ms)
            if isinstance(response, SyncError):
                emit("error", where="sync", message=response.message, status=response.status_code)
                return 1
    except asyncio.TimeoutError:
        emit("deadline", seconds=deadline_s, seen_final=seen_final, left=left)
        return 2
    finally:
        await client.close()


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    homeserver, user_id, device_id, token, final_body = sys.argv[1:6]
    deadline_s = float(sys.argv[6]) if len(sys.argv) == 7 else 30.0
    sys.exit(asyncio.run(main(homeserver, user_id, device_id, token, final_body, deadline_s)))
