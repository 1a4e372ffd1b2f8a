"""The plugin's settings: RECSYS_ANNOY_*, declared for the core, read without loading the engine."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from recsys.config import Settings
from recsys.errors import ConfigError
from recsys.registry import SETTINGS_GROUP, discover_plugin_settings
from recsys_engine_annoy import AnnoyEngine
from recsys_engine_annoy.encoders import BACKENDS
from recsys_engine_annoy.settings import BACKEND_CHOICES, SETTINGS, AnnoySettings

PLUGIN = Path(__file__).resolve().parents[1]


def test_the_setup_cfg_entry_point_names_the_declaration():
    config = configparser.ConfigParser()
    config.read(PLUGIN / "setup.cfg")
    name, _, value = config.get("options.entry_points", SETTINGS_GROUP).strip().partition("=")
    assert discover_plugin_settings([EntryPoint(name.strip(), value.strip(), SETTINGS_GROUP)]) == (SETTINGS,)


def test_variables_are_under_the_plugins_prefix_and_model_keeps_its_old_name():
    assert {f.env for f in SETTINGS.fields} == {
        "RECSYS_ANNOY_MODEL", "RECSYS_ANNOY_EMBEDDING_BACKEND", "RECSYS_ANNOY_BATCH_SIZE", "RECSYS_ANNOY_DEVICE",
        "RECSYS_ANNOY_TREES", "RECSYS_ANNOY_SEARCH_K", "RECSYS_ANNOY_LEXICAL_WEIGHT",
    }
    assert SETTINGS.names - {f.env for f in SETTINGS.fields} == {"RECSYS_MODEL"}
    assert BACKEND_CHOICES == ("auto", *BACKENDS)


def test_the_environment_reaches_the_engine_typed(tmp_path):
    environ = {"RECSYS_MODEL": str(tmp_path), "RECSYS_ANNOY_TREES": "12", "RECSYS_ANNOY_BATCH_SIZE": "8",
               "RECSYS_ANNOY_EMBEDDING_BACKEND": "ONNX"}
    engine = AnnoyEngine(Settings.from_env(environ, env_file=None, plugins=[SETTINGS]))
    assert engine.options == AnnoySettings(model=tmp_path, trees=12, batch_size=8, embedding_backend="onnx")


def test_a_bad_value_fails_at_start():
    with pytest.raises(ConfigError, match="RECSYS_ANNOY_DEVICE='tpu' is not valid: expected one of: auto, cpu, cuda"):
        Settings.from_env({"RECSYS_ANNOY_DEVICE": "tpu"}, env_file=None, plugins=[SETTINGS])


def test_reading_the_declaration_imports_neither_the_engine_nor_its_libraries():
    code = (
        "import sys, recsys_engine_annoy.settings\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'annoy', 'torch', 'onnxruntime',"
        " 'sentence_transformers') or m == 'recsys_engine_annoy.engine'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
