"""The deployment files parse and name only real settings (no Docker engine or cluster runs here).

docker-compose.yml and deploy/kubernetes/*.yaml are read with PyYAML; every ``SIDECAR_*`` they
name must be a variable ``Settings.from_env`` reads. The Dockerfile is checked for its two
stages: a compiler only in the builder, the runtime installing wheels only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import Settings, parse_redis_url

REPO = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = (REPO / "sidecar" / "config.py").read_text()
SETTING = re.compile(r"SIDECAR_[A-Z0-9_]+")
DEPLOY_FILES = [REPO / "docker-compose.yml", *sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))]


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def real_settings() -> set[str]:
    return {name for name in SETTING.findall(CONFIG_SOURCE) if f'"{name}"' in CONFIG_SOURCE}


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_every_setting_a_deployment_file_names_is_real(path: Path) -> None:
    assert documents(path), f"{path} holds no YAML document"
    named = set(SETTING.findall(path.read_text()))
    assert named <= real_settings(), f"not settings: {sorted(named - real_settings())}"


def test_the_settings_the_files_set_are_accepted_by_the_settings_parser() -> None:
    compose = documents(REPO / "docker-compose.yml")[0]
    env = {k: str(v) for k, v in compose["x-sidecar"]["environment"].items() if "${" not in str(v)}
    settings = Settings.from_env(env)
    assert settings.redis_min_replicas == 1
    assert parse_redis_url(env["SIDECAR_REDIS_URL"]).service == "sidecar"
    assert len(parse_redis_url(env["SIDECAR_REDIS_URL"]).sentinels) == 3


def test_compose_runs_two_sidecars_a_primary_a_replica_and_three_sentinels() -> None:
    services = documents(REPO / "docker-compose.yml")[0]["services"]
    assert {"sidecar-1", "sidecar-2", "redis-primary", "redis-replica", "sentinel-1", "sentinel-2",
            "sentinel-3"} <= set(services)
    assert "--replicaof" in services["redis-replica"]["command"]
    assert all("--sentinel" in services[f"sentinel-{i}"]["command"][-1] for i in (1, 2, 3))


def test_kubernetes_runs_the_sidecar_beside_the_app_with_probes_resources_and_secrets() -> None:
    deployment = next(d for d in documents(REPO / "deploy" / "kubernetes" / "deployment.yaml")
                      if d["kind"] == "Deployment")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"app", "sidecar"}
    sidecar = containers["sidecar"]
    assert sidecar["args"][:3] == ["serve", "--host", "127.0.0.1"]  # localhost only, inside the pod
    assert {"livenessProbe", "readinessProbe", "startupProbe", "resources"} <= set(sidecar)
    assert "/readyz" in " ".join(sidecar["readinessProbe"]["exec"]["command"])
    assert "/livez" in " ".join(sidecar["livenessProbe"]["exec"]["command"])
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["SIDECAR_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "sidecar"
    assert env["SIDECAR_MFA_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "sidecar"
    secret = documents(REPO / "deploy" / "kubernetes" / "secret.yaml")[0]
    assert {"tokens.json", "jwt-public.pem", "redis-url"} <= set(secret["stringData"])
    assert parse_redis_url(secret["stringData"]["redis-url"]).sentinels


def test_the_dockerfile_builds_wheels_with_a_compiler_and_runs_without_one() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2
    builder, runtime = stages
    assert "build-essential" in builder and "pip wheel" in builder
    assert "build-essential" not in runtime and "gcc" not in runtime
    assert "--no-index" in runtime and "--only-binary=:all:" in runtime
    assert re.search(r"^USER 10001$", runtime, flags=re.M)
    assert "SIDECAR_BOOTSTRAP_TOKEN_FILE=" in runtime
    assert re.search(r'^ENTRYPOINT \["sidecar"\]\nCMD \["serve"', runtime, flags=re.M)
    assert set(SETTING.findall(text)) <= real_settings()
