"""The package boundaries of docs/architecture.md, checked on the source (AST imports).

| package        | must not import                          |
| recsys/        | falcon, dramatiq, periodiq, torch, pika  |  (recsys/cli may import recsys_api and
| recsys_api/    | torch, engine plugins, recsys_workers    |   recsys_workers, lazily, for `serve`)
| recsys_workers/| falcon; of recsys_api only broadcast and  |
|                | memory_results (falcon-free)              |
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "recsys": {"falcon", "dramatiq", "periodiq", "torch", "pika", "recsys_api", "recsys_workers",
               "sentence_transformers", "annoy"},
    "recsys_api": {"torch", "sentence_transformers", "annoy", "recsys_engine_annoy", "recsys_engine_lexical",
                   "recsys_workers"},
    "recsys_workers": {"falcon"},
}
#: The API modules the workers may import: the API's half of the messaging contract.
WORKERS_MAY_IMPORT = {"recsys_api.broadcast", "recsys_api.memory_results"}


def imported_modules(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_architecture(package):
    offenders = []
    for path in sources(package):
        rel = path.relative_to(ROOT)
        allowed = {"recsys_api", "recsys_workers"} if rel.parts[:2] == ("recsys", "cli") else set()
        for module, line in imported_modules(path):
            if module in FORBIDDEN[package] - allowed:
                offenders.append(f"{rel}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_importing_the_core_and_the_api_does_not_import_torch():
    code = (
        "import sys, recsys, recsys.config, recsys.registry, recsys.archive, recsys.store, recsys.cache, "
        "recsys.build, recsys.load, recsys.sources, recsys.testing, recsys.cli\n"
        "from recsys.registry import Registry\n"
        "Registry.discover(load=False)\n"
        "heavy = sorted(m for m in ('torch', 'falcon', 'dramatiq', 'sentence_transformers') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_the_workers_import_only_the_falcon_free_messaging_modules_of_the_api():
    used = set()
    for path in sources("recsys_workers"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recsys_api"):
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {alias.name for alias in node.names if alias.name.startswith("recsys_api")}
    assert used <= WORKERS_MAY_IMPORT, used - WORKERS_MAY_IMPORT
    code = ("import sys, " + ", ".join(sorted(WORKERS_MAY_IMPORT)) + "\n"
            "print('falcon' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_api_unit_tests_import_no_worker_module():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "tests" / "unit" / "api").rglob("*.py"))
        for module, line in imported_modules(path) if module == "recsys_workers"
    ]
    assert not offenders, "\n".join(offenders)
