"""The policy bundle: everything read from ``policies/`` at one moment, validated together.

Loading is all-or-nothing: a broken file raises ``PolicyFileError`` naming the file and line,
and a caller that reloads keeps the previous bundle (reload into a copy, then swap).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sidecar.policy.catalogue import Catalogue, RoleTemplate, load_catalogue, load_role_templates
from sidecar.policy.engine import validate_model
from sidecar.policy.files import PolicyFileError
from sidecar.policy.routes import RouteTable, load_routes

POLICY_FILES = ("model.conf", "catalogue.yaml", "roles.yaml", "routes.yaml")


@dataclass(frozen=True)
class PolicyBundle:
    directory: Path
    model_text: str
    catalogue: Catalogue
    templates: dict[str, RoleTemplate]
    routes: RouteTable
    fingerprint: str
    version: int = 0  # the newest policy file's mtime (ns) at load: orders reloads across replicas


def fingerprint(directory: Path) -> str:
    """A cheap digest of the policy files' names, sizes and mtimes, to notice edits."""
    h = hashlib.sha256()
    for name in POLICY_FILES:
        try:
            stat = (directory / name).stat()
        except FileNotFoundError:
            continue
        h.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return h.hexdigest()


def version_of(directory: Path) -> int:
    """The newest modification time (ns) of the policy files: a later edit is a larger version."""
    times = [0]
    for name in POLICY_FILES:
        try:
            times.append((directory / name).stat().st_mtime_ns)
        except FileNotFoundError:
            continue
    return max(times)


def load_bundle(directory: Path) -> PolicyBundle:
    directory = directory.resolve()
    stamp, version = fingerprint(directory), version_of(directory)
    model_file = directory / "model.conf"
    try:
        model_text = model_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(model_file, None, f"cannot read: {exc.strerror}") from None
    validate_model(model_file, model_text)  # the engine is the only module that speaks casbin
    catalogue = load_catalogue(directory / "catalogue.yaml")
    templates = load_role_templates(directory / "roles.yaml", catalogue)
    routes = load_routes(directory / "routes.yaml", catalogue.names())
    return PolicyBundle(directory, model_text, catalogue, templates, routes, stamp, version)

