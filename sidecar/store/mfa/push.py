"""The push channel: one entry on the Redis stream ``sidecar:push-outbox`` per push challenge.

The push gateway consumes the stream (XREAD / a consumer group) and notifies the employee's
phones; the mobile app answers through ``POST /v1/mfa/challenges/{id}/approve``. An entry's
fields, all strings::

    challenge_id, employee, expires_at (RFC 3339 UTC),
    push_tokens   JSON list of the employee's device push tokens
    devices       JSON list of {"id", "platform", "push_token"}
    device        JSON object: the device asking to sign in ({} if unknown)
    ip            the IP asking ("" if unknown)

The stream is capped (approximately) at ``OUTBOX_MAXLEN`` entries.
"""

from __future__ import annotations

import json

import redis

from sidecar.store.connection import translated_errors
from sidecar.store.mfa.devices import Device

OUTBOX_STREAM = "sidecar:push-outbox"
OUTBOX_MAXLEN = 100_000


class PushOutbox:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client

    def publish(self, *, challenge_id: str, employee: str, devices: list[Device], requesting_device: dict[str, str],
                ip: str | None, expires_at: str) -> str:
        fields = {
            "challenge_id": challenge_id,
            "employee": employee,
            "expires_at": expires_at,
            "push_tokens": json.dumps([d.push_token for d in devices]),
            "devices": json.dumps([{"id": d.id, "platform": d.platform, "push_token": d.push_token} for d in devices]),
            "device": json.dumps(requesting_device, sort_keys=True),
            "ip": ip or "",
        }
        with translated_errors():
            entry_id = self.client.xadd(OUTBOX_STREAM, fields, maxlen=OUTBOX_MAXLEN, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
