"""The devices an employee has signed in from: one Redis set per employee.

Layout: ``sc:emp:<E>:devices-seen`` SET of device ids. :meth:`SeenDevices.first_sighting` is
one ``SADD``, so when several workers (or replicas) see the same new device at once exactly one
of them is told it is new. Redis errors surface as ``StoreUnavailable``.

Imports: redis and the store's error translation.
"""

from __future__ import annotations

from sidecar.store.connection import Client, translated_errors


def seen_key(employee: str) -> str:
    return f"sc:emp:{employee}:devices-seen"


class SeenDevices:
    def __init__(self, client: Client) -> None:
        self.client = client

    def first_sighting(self, employee: str, device_id: str) -> bool:
        """Remember the device; True only the first time it is seen for this employee."""
        with translated_errors():
            return bool(self.client.sadd(seen_key(employee), device_id))

    def forget(self, employee: str, device_id: str) -> None:
        """Undo a sighting whose event could not be recorded, so the next login records it."""
        with translated_errors():
            self.client.srem(seen_key(employee), device_id)

    def devices(self, employee: str) -> list[str]:
        """Every device id seen for the employee, sorted."""
        with translated_errors():
            return sorted(d.decode() for d in self.client.smembers(seen_key(employee)))
