"""Employees' registered phones: the devices whose mobile app may answer a push challenge.

Layout: ``sidecar:mfa:devices:<E>`` HASH device id -> JSON {id, name, platform, push_token,
registered_at}. Registering an id again replaces that device. Only a device registered to the
challenge's employee may approve or deny it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from sidecar.store.connection import translated_errors


def devices_key(employee: str) -> str:
    return f"sidecar:mfa:devices:{employee}"


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    platform: str
    push_token: str
    registered_at: float

    def public(self) -> dict[str, object]:
        """What the API shows: everything but the push token, which only the push gateway needs."""
        return {"id": self.id, "name": self.name, "platform": self.platform, "registered_at": self.registered_at}


class DeviceStore:
    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client

    def register(self, employee: str, device: Device) -> bool:
        """Store the device; True if it is new, False if it replaced one with the same id."""
        with translated_errors():
            created = self.client.hset(devices_key(employee), device.id, json.dumps(asdict(device)))
        return bool(created)

    def remove(self, employee: str, device_id: str) -> bool:
        with translated_errors():
            return bool(self.client.hdel(devices_key(employee), device_id))

    def get(self, employee: str, device_id: str) -> Device | None:
        with translated_errors():
            raw = self.client.hget(devices_key(employee), device_id)
        return None if raw is None else Device(**json.loads(raw))

    def all(self, employee: str) -> list[Device]:
        with translated_errors():
            raw = self.client.hgetall(devices_key(employee))
        return sorted((Device(**json.loads(value)) for value in raw.values()), key=lambda d: d.id)
