"""The distributions match the layers (setup.cfg): the core installs only what `recsys/`
imports, the service parts come with extras, plugins depend on the core only.

| code                               | may import (besides the standard library)       |
| recsys/ (core)                     | install_requires                                 |
| recsys/testing/                    | install_requires + the test extra (pytest)       |
| recsys/cli/embedded.py, serve.py   | install_requires + serve (+ recsys_api, workers) |
| recsys_api/                        | install_requires + api                           |
| recsys_workers/                    | install_requires + workers                       |
| plugins/<dist>/<package>/          | that plugin's install_requires (recsys: core)    |
"""

from __future__ import annotations

import ast
import configparser
import functools
import os
import re
import subprocess
import sys
import textwrap
import venv
from importlib import metadata
from pathlib import Path

import pytest

from recsys.cli.main import SERVE_MODULES

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"recsys", "recsys_api", "recsys_workers"}
#: What `pip install recsys` must not bring (the issue's list).
SERVICE_DISTRIBUTIONS = ("falcon", "dramatiq", "gunicorn", "periodiq", "pika", "cheroot")
SERVICE_MODULES = ("falcon", "dramatiq", "gunicorn", "periodiq", "pika", "cheroot")


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unparsable requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _lines(value: str) -> list[str]:
    return [line.split("#")[0].strip() for line in value.splitlines() if line.split("#")[0].strip()]


def requirements(setup_cfg: Path) -> tuple[list[str], dict[str, list[str]]]:
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    core = _lines(config.get("options", "install_requires", fallback=""))
    extras = {}
    if config.has_section("options.extras_require"):
        extras = {name: _lines(value) for name, value in config.items("options.extras_require")}
    return core, extras


CORE, EXTRAS = requirements(ROOT / "setup.cfg")


def names(reqs: list[str]) -> set[str]:
    return {_name(r) for r in reqs}


def third_party_imports(path: Path, own: set[str]) -> dict[str, int]:
    """Top-level module -> first line, for every import in ``path`` (lazy ones included)."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in own and top != "__future__":
                found.setdefault(top, node.lineno)
    return found


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def distribution_of(module: str) -> set[str]:
    return {_name(d) for d in _distributions().get(module, [])}


def undeclared(files: list[Path], allowed: set[str], own: set[str]) -> list[str]:
    problems = []
    for path in files:
        for module, line in sorted(third_party_imports(path, own).items()):
            dists = distribution_of(module)
            if not dists:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}: no installed distribution has it")
            elif not dists & allowed:
                problems.append(
                    f"{path.relative_to(ROOT)}:{line} imports {module} (from {', '.join(sorted(dists))}), "
                    f"not among this layer's requirements"
                )
    return problems


SERVE_FILES = {ROOT / "recsys" / "cli" / "embedded.py", ROOT / "recsys" / "cli" / "serve.py"}


def _layer_files(layer: str) -> list[Path]:
    if layer == "core":
        return [p for p in sorted((ROOT / "recsys").rglob("*.py"))
                if p not in SERVE_FILES and "testing" not in p.relative_to(ROOT).parts]
    if layer == "testing":
        return sorted((ROOT / "recsys" / "testing").rglob("*.py"))
    if layer == "serve":
        return sorted(SERVE_FILES)
    return sorted((ROOT / f"recsys_{layer}").rglob("*.py"))


@pytest.mark.parametrize(
    ("layer", "extra"),
    [("core", None), ("testing", "test"), ("serve", "serve"), ("api", "api"), ("workers", "workers")],
)
def test_every_import_of_a_layer_is_a_requirement_of_its_distribution_or_extra(layer, extra):
    allowed = names(CORE) | (names(EXTRAS[extra]) if extra else set())
    problems = undeclared(_layer_files(layer), allowed, FIRST_PARTY)
    assert not problems, "\n".join(problems)


def test_the_core_requires_none_of_the_service_libraries():
    assert not names(CORE) & set(SERVICE_DISTRIBUTIONS), CORE


def test_serve_is_api_plus_workers_plus_its_server_and_all_is_every_runtime_extra():
    assert set(EXTRAS) == {"api", "workers", "serve", "all", "test"}
    assert set(EXTRAS["serve"]) == set(EXTRAS["api"]) | set(EXTRAS["workers"]) | {"cheroot>=10,<12", "pendulum>=2.0,<4"}
    assert set(EXTRAS["all"]) == set(EXTRAS["api"]) | set(EXTRAS["workers"]) | set(EXTRAS["serve"])


#: Loaded by gunicorn only (its worker class): ``recsys serve`` runs on cheroot and never imports it.
GUNICORN_ONLY = {ROOT / "recsys_api" / "gunicorn_worker.py"}


def test_recsys_serve_checks_exactly_the_modules_of_its_extra():
    modules = set(SERVE_MODULES)
    for module in modules:
        assert distribution_of(module) & names(EXTRAS["serve"]), f"{module} is not from the serve extra"
    imported = set()
    for layer in ("serve", "api", "workers"):
        for path in _layer_files(layer):
            if path in GUNICORN_ONLY:
                continue
            imported |= set(third_party_imports(path, FIRST_PARTY))
    service = {m for m in imported if distribution_of(m) & (names(EXTRAS["serve"]) - names(CORE))}
    assert service <= modules | {"pendulum"}, f"recsys serve does not check for {sorted(service - modules)}"


PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/setup.cfg"))


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_a_plugin_depends_on_the_core_only_and_imports_only_its_requirements(plugin):
    core, extras = requirements(plugin / "setup.cfg")
    recsys_requirement = [r for r in core if _name(r) == "recsys"]
    assert recsys_requirement, f"{plugin.name} must require recsys"
    assert "[" not in recsys_requirement[0], f"{plugin.name} must require the core only: {recsys_requirement[0]}"
    package = plugin.name.replace("-", "_")
    files = sorted((plugin / package).rglob("*.py"))
    assert files
    own = {"recsys", package}
    problems = undeclared(files, names(core), own)
    for path in files:
        for module, line in third_party_imports(path, {package}).items():
            if module in {"recsys_api", "recsys_workers"}:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module} (a service package)")
    assert not problems, "\n".join(problems)


def test_recsys_commands_work_without_the_service_libraries(tmp_path):
    # Given a process where none of the service libraries can be imported (txtai's trick),
    # when running the commands that need no service, then they work; `recsys serve` says
    # which extra to install.
    code = textwrap.dedent(f"""
        import sys
        for name in {SERVICE_MODULES + SERVE_MODULES!r}:
            sys.modules[name] = None
        import recsys, recsys.cli
        from recsys.cli import main
        assert main(["engines"]) == 0
        assert main(["settings"]) == 0
        print("serve-exit", main(["serve", "--port", "0"]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "serve-exit 1" in out.stdout
    assert "pip install 'recsys[serve]'" in out.stderr
    assert "falcon" in out.stderr and "cheroot" in out.stderr


# -- a fresh virtual environment ------------------------------------------------------


def _copy_distribution(source: Path, target: Path) -> Path:
    """The files a distribution is built from, without the checkout's caches and builds."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".venv", "tests", "benchmarks")
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name in {"setup.cfg", "pyproject.toml", "README.md"}:
            shutil.copy2(entry, target / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").exists():
            shutil.copytree(entry, target / entry.name, ignore=ignore)
    return target


@pytest.mark.slow
def test_pip_install_of_the_core_and_the_lexical_plugin_brings_no_service_library(tmp_path):
    # Given a fresh virtual environment with `pip install recsys plugins/recsys-engine-lexical`
    # (not editable: what a plugin's user gets from the distribution's metadata alone),
    core = _copy_distribution(ROOT, tmp_path / "src" / "recsys")
    lexical = _copy_distribution(ROOT / "plugins" / "recsys-engine-lexical", tmp_path / "src" / "lexical")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-compile",
         str(core), str(lexical)],
        capture_output=True, text=True, env=environ, timeout=540,
    )
    if install.returncode != 0:
        if re.search(r"(?i)connection|network|resolve|timed out|No matching distribution", install.stderr):
            from tests.conftest import unavailable

            unavailable(f"PyPI, for a fresh install (pip said: {install.stderr.strip()[-300:]})")
        pytest.fail(f"pip install failed:\n{install.stdout}\n{install.stderr}")

    # then none of the service libraries is installed or importable,
    probe = (
        "import importlib.util, importlib.metadata as m, json\n"
        f"dists = [d for d in {SERVICE_DISTRIBUTIONS!r} if any(True for _ in m.distributions(name=d))]\n"
        f"mods = [n for n in {SERVICE_MODULES!r} if importlib.util.find_spec(n) is not None]\n"
        "print(json.dumps({'distributions': dists, 'modules': mods}))"
    )
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=environ,
                           cwd=tmp_path, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == '{"distributions": [], "modules": []}'

    # and `recsys engines` lists the lexical engine and exits 0.
    engines = subprocess.run([str(env_dir / "bin" / "recsys"), "engines"], capture_output=True, text=True,
                             env=environ, cwd=tmp_path, timeout=120)
    assert engines.returncode == 0, engines.stderr
    assert re.search(r"^lexical\s+loaded\s+recsys-engine-lexical 0\.1\.0$", engines.stdout, re.M), engines.stdout
    shown = subprocess.run([str(env_dir / "bin" / "recsys"), "settings"], capture_output=True, text=True,
                           env=environ, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0 and "RECSYS_ENGINE=annoy" in shown.stdout, shown.stderr


def test_the_images_and_the_install_script_install_the_extras_their_commands_need():
    # The API image runs gunicorn (api) and periodiq (workers); the worker image dramatiq
    # (workers) with the plugins; a checkout gets everything (`scripts/run` is `recsys serve`).
    api = (ROOT / "deploy" / "Dockerfile.api").read_text(encoding="utf-8")
    worker = (ROOT / "deploy" / "Dockerfile.worker").read_text(encoding="utf-8")
    install = (ROOT / "scripts" / "install").read_text(encoding="utf-8")
    assert re.search(r'^RUN pip install "\.\[api,workers\]"', api, re.M)
    assert re.search(r'^RUN pip install "\.\[workers\]" \./plugins/recsys-engine-annoy', worker, re.M)
    assert 'extras="[all]"' in install and 'extras="[all,test]"' in install
