"""Load a saved engine in this (fresh) process and answer queries, for the conformance suite.

Usage::

    python -m recsys.testing.fresh package.module:EngineClass FOLDER < queries.json

Reads a JSON array of queries (``Query.to_dict`` shapes) from stdin, loads the
engine with settings from the environment (``RECSYS_*``), and prints one JSON
array of answers (see :func:`recsys.testing.checks.answer`) on stdout.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from recsys.config import Settings
from recsys.domain import Query
from recsys.engine import Engine
from recsys.testing.checks import answer


def _engine_class(reference: str) -> type[Engine]:
    module_name, _, qualname = reference.partition(":")
    obj: object = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        obj = getattr(obj, attribute)
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        raise SystemExit(f"{reference} is not an Engine subclass")
    return obj


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    engine_class = _engine_class(argv[0])
    queries = [Query.from_dict(q) for q in json.load(sys.stdin)]
    settings = Settings.from_env(env_file=None)
    with engine_class.load(Path(argv[1]), settings) as engine:
        answers = [answer(engine, q) for q in queries]
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
