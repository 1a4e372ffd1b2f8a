"""deploy/compose.yml: valid Compose, and complete for recsys.

The file is checked twice against the Compose Specification: by Debian's
``docker-compose`` (``config -q``, no Docker engine needed) and with jsonschema
against the schema that package ships (found through its installation, never
copied here). Both skip when docker-compose is absent, and fail under CI=true,
where .ci/run installs it. The rest reads the YAML: services, plain commands,
healthchecks, depends_on conditions, volumes, and the RECSYS_ settings it sets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from recsys.config import FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yml"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
SERVICES = {"rabbitmq", "redis", "api", "worker", "scheduler"}
#: Started only with `--profile monitoring`.
MONITORING = {"prometheus", "grafana"}
RECSYS_SERVICES = ("api", "worker", "scheduler")
KNOWN_SETTINGS = {field.env for field in FIELDS}
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "deploy/compose.yml must be a mapping"
    return data


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose["services"][name]
    return svc


def environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = service(compose, name).get("environment", {})
    assert isinstance(env, dict), f"{name}: write environment: as a mapping"
    return {key: str(value) for key, value in env.items()}


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        reason = "docker-compose is not installed (Debian package docker-compose; .ci/run installs it)"
        if IN_CI:
            pytest.fail(reason + ", and CI=true requires it", pytrace=False)
        pytest.skip(reason)
    return path


def compose_schema_path(executable: str) -> Path:
    """The Compose Specification schema shipped with the docker-compose installation."""
    first = Path(executable).read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        pytest.fail(f"{executable} is not a Python script: cannot find its compose_spec.json")
    interpreter = first[2:].strip().split()
    found = subprocess.run(
        [*interpreter, "-c", "import compose.config, os; print(os.path.dirname(compose.config.__file__))"],
        capture_output=True, text=True, timeout=60,
    )
    assert found.returncode == 0, f"cannot locate docker-compose's package: {found.stderr}"
    schema = Path(found.stdout.strip()) / "compose_spec.json"
    assert schema.is_file(), f"docker-compose has no {schema}"
    return schema


def copy_for_compose(tmp_path: Path) -> Path:
    """deploy/ and a .env (from .env.example) laid out as in a checkout after the
    documented first step, ``cp .env.example .env``; returns the compose file."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path / "deploy" / "compose.yml"


# -- the Compose Specification -------------------------------------------------


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    executable = docker_compose()
    copy = copy_for_compose(tmp_path)
    done = subprocess.run([executable, "-f", str(copy), "config", "-q"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, f"docker-compose config rejected deploy/compose.yml:\n{done.stderr}"


def test_file_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(compose_schema_path(docker_compose()).read_text(encoding="utf-8"))
    # docker-compose 1.29's schema names its draft as "http://json-schema.org/draft/2019-09/schema#",
    # which jsonschema does not look up; pick the validator by the draft it names.
    drafts = {"2019-09": jsonschema.Draft201909Validator, "2020-12": jsonschema.Draft202012Validator,
              "draft-07": jsonschema.Draft7Validator, "draft-04": jsonschema.Draft4Validator}
    named = str(schema.get("$schema", ""))
    validator_class = next((cls for draft, cls in drafts.items() if draft in named), jsonschema.Draft201909Validator)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors)


def test_no_obsolete_or_unsupported_top_level_keys(compose: dict[str, Any]) -> None:
    # `version` is obsolete in the Compose Specification; docker-compose 1.29 rejects `name`.
    assert "version" not in compose
    assert "name" not in compose


# -- services and commands -----------------------------------------------------


def test_every_component_is_a_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES | MONITORING
    for name in SERVICES:
        assert "profiles" not in service(compose, name), f"{name} must start with a plain `up`"
    for name in MONITORING:
        assert service(compose, name)["profiles"] == ["monitoring"], name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_command_is_a_plain_command_line(compose: dict[str, Any], name: str) -> None:
    command = service(compose, name).get("command")
    assert isinstance(command, list) and command, f"{name}: command must be a non-empty list"
    assert all(isinstance(part, str) for part in command), f"{name}: every part of command must be a string"
    assert command[0] not in SHELLS, f"{name}: no shell wrapper in command: {command}"
    assert not any("$" in part for part in command), f"{name}: no variable expansion in command: {command}"
    assert "entrypoint" not in service(compose, name), f"{name}: keep the image's entrypoint"


def test_api_runs_gunicorn_on_the_wsgi_app(compose: dict[str, Any]) -> None:
    import importlib.util

    command = service(compose, "api")["command"]
    assert command[0] == "gunicorn"
    config = command[command.index("-c") + 1]
    assert (ROOT / config).is_file(), f"the API's gunicorn config {config} does not exist"
    module, _, attribute = command[-1].partition(":")
    assert attribute == "app" and importlib.util.find_spec(module) is not None, command


def test_worker_and_scheduler_commands(compose: dict[str, Any]) -> None:
    worker = service(compose, "worker")["command"]
    assert worker[:2] == ["dramatiq", "recsys_workers"]
    assert "--processes" in worker and "--threads" in worker, "size the pool explicitly"
    assert "--queues" not in worker, "the compose pool consumes every queue"
    assert service(compose, "scheduler")["command"] == ["periodiq", "recsys_workers"]


def test_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = service(compose, "worker")
    # `--scale worker=N` needs no fixed container name and no published port.
    assert "container_name" not in worker
    assert "ports" not in worker


@pytest.mark.parametrize(("name", "dockerfile"), [
    ("api", "Dockerfile.api"), ("worker", "Dockerfile.worker"), ("scheduler", "Dockerfile.api"),
])
def test_images_are_built_from_the_dockerfiles(compose: dict[str, Any], name: str, dockerfile: str) -> None:
    build = service(compose, name)["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert build["dockerfile"] == f"deploy/{dockerfile}"
    assert (ROOT / build["dockerfile"]).is_file()


def _dockerfile_cmd(path: Path) -> list[str]:
    cmds = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("CMD ")]
    assert len(cmds) == 1, f"{path.name} needs exactly one CMD"
    parsed: list[str] = json.loads(cmds[0][len("CMD "):])
    return parsed


def test_dockerfile_defaults_match_the_compose_commands(compose: dict[str, Any]) -> None:
    assert _dockerfile_cmd(DEPLOY / "Dockerfile.api") == service(compose, "api")["command"]
    assert _dockerfile_cmd(DEPLOY / "Dockerfile.worker") == service(compose, "worker")["command"]


def test_api_image_has_no_torch_and_worker_image_a_cpu_build() -> None:
    api = (DEPLOY / "Dockerfile.api").read_text(encoding="utf-8")
    steps = [line for line in api.splitlines() if line.startswith(("COPY", "RUN")) or "pip install" in line]
    assert not any("torch" in step or "plugins" in step for step in steps), steps
    worker = (DEPLOY / "Dockerfile.worker").read_text(encoding="utf-8")
    assert re.search(r"pip install \"torch==\$\{TORCH_VERSION\}\" --index-url \"\$\{TORCH_INDEX_URL\}\"", worker)
    assert re.search(r"ARG TORCH_INDEX_URL=\S+/cpu\b", worker), "the worker image must take a CPU torch build"
    assert "recsys-engine-annoy" in worker


# -- healthchecks and start order ----------------------------------------------


def test_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("rabbitmq", "redis", "api"):
        test = service(compose, name)["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] == "CMD", f"{name}: healthcheck without a shell"
    api_check = " ".join(service(compose, "api")["healthcheck"]["test"])
    assert "/health" in api_check
    assert "/ready" not in api_check, "healthchecks use /health: /ready fails until the first engine exists"


def test_depends_on_conditions(compose: dict[str, Any]) -> None:
    wanted = {
        "api": {"rabbitmq", "redis"},
        "worker": {"rabbitmq", "redis", "api"},
        "scheduler": {"rabbitmq", "redis"},
    }
    for name, needs in wanted.items():
        depends = service(compose, name)["depends_on"]
        assert set(depends) == needs, name
        for target, spec in depends.items():
            assert spec == {"condition": "service_healthy"}, f"{name} -> {target}"
            assert "healthcheck" in service(compose, target), f"{target} has no healthcheck to wait for"


# -- volumes and files ----------------------------------------------------------


def _mounts(compose: dict[str, Any], name: str) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes."""
    mounts = {}
    for entry in service(compose, name).get("volumes", []):
        source, target, *_ = entry.split(":")
        mounts[target] = source
    return mounts


def test_named_volumes_hold_the_archives_and_the_engine_stores(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    api_volume = _mounts(compose, "api")[environment(compose, "api")["RECSYS_DATA_DIR"]]
    worker_volume = _mounts(compose, "worker")[environment(compose, "worker")["RECSYS_DATA_DIR"]]
    assert {api_volume, worker_volume} <= declared
    assert api_volume != worker_volume, "the API's archive store and the workers' engine store are separate disks"
    assert _mounts(compose, "rabbitmq")["/var/lib/rabbitmq"] in declared
    used = {source for name in SERVICES | MONITORING for source in _mounts(compose, name).values()}
    assert declared <= used, f"declared but unused volumes: {declared - used}"


def test_bind_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name in SERVICES | MONITORING:
        for source in _mounts(compose, name).values():
            if source.startswith((".", "/")):
                assert (DEPLOY / source).is_file(), f"{name} mounts {source}, which does not exist"


def test_rabbitmq_consumer_timeout_outlasts_a_build(compose: dict[str, Any]) -> None:
    mounts = _mounts(compose, "rabbitmq")
    conf = [source for target, source in mounts.items() if target.startswith("/etc/rabbitmq/conf.d/")]
    assert len(conf) == 1, "mount one recsys conf file into /etc/rabbitmq/conf.d/"
    text = (DEPLOY / conf[0]).read_text(encoding="utf-8")
    found = re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", text, re.MULTILINE)
    assert found, f"{conf[0]} must set consumer_timeout"
    assert int(found.group(1)) > Settings().build_time_limit * 1000, "consumer_timeout must exceed a build's limit"


# -- settings -------------------------------------------------------------------


@pytest.mark.parametrize("name", RECSYS_SERVICES)
def test_settings_come_from_the_env_file(compose: dict[str, Any], name: str) -> None:
    # Relative to deploy/: the checkout's .env, made by `cp .env.example .env`.
    assert service(compose, name)["env_file"] == "../.env"


@pytest.mark.parametrize("name", RECSYS_SERVICES)
def test_environment_sets_known_and_valid_settings(compose: dict[str, Any], name: str) -> None:
    env = environment(compose, name)
    recsys = {key: value for key, value in env.items() if key.startswith("RECSYS_")}
    unknown = set(recsys) - KNOWN_SETTINGS
    assert not unknown, f"{name}: unknown settings {unknown} (not in recsys.config.FIELDS)"
    settings = Settings.from_env(recsys, env_file=None)  # every value parses
    assert not settings.embedded
    assert urlsplit(settings.broker_url or "").hostname == "rabbitmq"
    assert urlsplit(settings.results_url).hostname == "redis"
    assert urlsplit(settings.api_url).hostname == "api"


def test_broker_credentials_match_rabbitmq(compose: dict[str, Any]) -> None:
    rabbit = environment(compose, "rabbitmq")
    for name in RECSYS_SERVICES:
        url = urlsplit(environment(compose, name)["RECSYS_BROKER_URL"])
        assert (url.username, url.password) == (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])


def test_every_recsys_variable_in_the_deploy_files_exists() -> None:
    texts = [path.read_text(encoding="utf-8") for path in sorted(DEPLOY.iterdir()) if path.is_file()]
    used = set(re.findall(r"\bRECSYS_[A-Z0-9_]+\b", "\n".join(texts)))
    assert used, "no RECSYS_ variable found: is the pattern wrong?"
    assert not used - KNOWN_SETTINGS, f"unknown settings used in deploy/: {sorted(used - KNOWN_SETTINGS)}"
