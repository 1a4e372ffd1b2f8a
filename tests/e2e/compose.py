"""The commands of deploy/compose.yml: the end-to-end tests run exactly these.

Nothing here repeats a command line: each is read from the compose file, so a change
there is what the tests run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMPOSE_FILE", "ROOT", "command"]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yml"


@cache
def _services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    services: dict[str, Any] = data["services"]
    return services


def command(service: str, *extra: str) -> list[str]:
    """The ``command`` of ``service`` in deploy/compose.yml, with ``extra`` arguments
    appended (the last of a repeated option wins, e.g. ``--processes 1``)."""
    found = _services()[service].get("command")
    if not isinstance(found, list) or not all(isinstance(part, str) for part in found):
        raise AssertionError(f"deploy/compose.yml: service {service!r} has no command list: {found!r}")
    return [*found, *extra]
