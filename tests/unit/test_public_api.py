"""recsys/__init__.py: the public API for plugin authors, pinned (httpx's test_exported_members idea)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import recsys

#: Changing this list changes what plugin authors may rely on: say so in the changelog.
PUBLIC = {
    # the engine interface
    "Engine": "recsys.engine",
    "EngineMetadata": "recsys.engine",
    "Progress": "recsys.engine",
    "NULL_PROGRESS": "recsys.engine",
    "LogProgress": "recsys.engine",
    # what an engine takes and returns
    "Publication": "recsys.domain",
    "Query": "recsys.domain",
    "Recommendation": "recsys.domain",
    "Evidence": "recsys.domain",
    "split_sentences": "recsys.text",
    # errors an engine raises (or a plugin reports)
    "RecsysError": "recsys.errors",
    "ConfigError": "recsys.errors",
    "EngineNotFound": "recsys.errors",
    "EngineLoadError": "recsys.errors",
    "IncompatibleEngine": "recsys.errors",
    "InvalidQuery": "recsys.errors",
    "UnknownPublication": "recsys.errors",
    "SourceError": "recsys.errors",
    # settings, the core's and a plugin's own
    "Settings": "recsys.config",
    "Field": "recsys.config",
    "PluginSettings": "recsys.config",
    # finding engines
    "Registry": "recsys.registry",
    "EngineRecord": "recsys.registry",
    "__version__": None,
}


def test_all_is_exactly_the_public_api():
    assert sorted(recsys.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves_to_the_object_of_its_home_module():
    for name, home in PUBLIC.items():
        assert hasattr(recsys, name), f"recsys.{name} does not resolve"
        if home is not None:
            module = sys.modules[home]
            assert getattr(recsys, name) is getattr(module, name), f"recsys.{name} is not {home}.{name}"


def test_nothing_else_public_is_exported():
    # Submodules are reachable as attributes once imported; any other public attribute must be in __all__.
    exported = {name for name, value in vars(recsys).items()
                if not name.startswith("_") and not inspect.ismodule(value)}
    assert exported == set(recsys.__all__) - {"__version__"}


def test_the_public_api_needs_no_service_library_and_no_torch():
    heavy = ("falcon", "dramatiq", "pika", "periodiq", "torch", "numpy")
    code = f"import sys, recsys\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
