"""Effective rights (scope ``check``): ``GET /v1/locations/{location}/employees/{employee}/rights``.

Imports: Flask, the api edge and auth, the runtime.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from sidecar.api.auth import require_scope
from sidecar.api.context import current_runtime
from sidecar.api.edge import check_ids, reply

bp = Blueprint("rights", __name__)


@bp.get("/v1/locations/<location>/employees/<employee>/rights")
@require_scope("check")
def rights(location: str, employee: str) -> Any:
    check_ids(location=location, employee=employee)
    runtime = current_runtime()
    engine = runtime.replica.engine_for_location(location)
    held: list[str] = []
    if engine is not None:
        person = engine.directory.employees.get(employee)
        if person is not None and person.active:
            held = sorted(engine.rights(employee, location))
    return reply({"employee": employee, "location": location, "rights": held,
                  "revision": engine.directory.revision if engine else None})
