"""Plugin settings: a plugin declares RECSYS_<NAME>_* fields, the core reads, checks, lists them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from recsys.config import Field, PluginSettings, Settings, int_range, one_of, optional, parse_bool, parse_text
from recsys.errors import ConfigError
from recsys.registry import SETTINGS_GROUP, discover_plugin_settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class MineSettings:
    depth: int = 3
    mode: str = "fast"
    token: str | None = None
    verbose: bool = False


MINE = PluginSettings(
    "my-engine",
    (
        Field("depth", int_range(1, 10), "3", "levels searched", aliases=("RECSYS_MINE_DEPTH",)),
        Field("mode", one_of("fast", "exact"), "fast", "how it searches"),
        Field("token", optional(parse_text), "", "a key", secret=True),
        Field("verbose", parse_bool, "false", "log more"),
    ),
    MineSettings,
    title="an example plugin",
)


def read(environ: dict[str, str], env_file: Path | None = None) -> Settings:
    return Settings.from_env(environ, env_file=env_file, plugins=[MINE])


def test_a_plugin_names_its_variables_under_its_own_prefix():
    assert MINE.prefix == "RECSYS_MY_ENGINE_"
    assert [f.env for f in MINE.fields] == [
        "RECSYS_MY_ENGINE_DEPTH", "RECSYS_MY_ENGINE_MODE", "RECSYS_MY_ENGINE_TOKEN", "RECSYS_MY_ENGINE_VERBOSE",
    ]


def test_plugin_settings_are_typed_with_defaults_for_unset_variables():
    settings = read({"RECSYS_MY_ENGINE_DEPTH": "7", "RECSYS_MY_ENGINE_VERBOSE": "yes"})
    assert settings.plugin(MINE) == MineSettings(depth=7, verbose=True)
    assert settings.plugin("my-engine") == MineSettings(depth=7, verbose=True)
    assert read({}).plugin(MINE) == MineSettings()
    # settings made in code (tests) have every plugin at its defaults
    assert Settings().plugin(MINE) == MineSettings()


def test_a_bad_plugin_value_fails_at_start_naming_the_variable():
    with pytest.raises(ConfigError) as info:
        read({"RECSYS_MY_ENGINE_MODE": "slow"})
    assert str(info.value) == "RECSYS_MY_ENGINE_MODE='slow' is not valid: expected one of: fast, exact"


def test_a_bad_secret_plugin_value_is_not_echoed():
    bad = PluginSettings("sec", (Field("key", int_range(1, 2), "1", "a key", secret=True),), lambda key: key)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RECSYS_SEC_KEY": "hunter2"}, env_file=None, plugins=[bad])
    assert "hunter2" not in str(info.value) and "RECSYS_SEC_KEY='***'" in str(info.value)


def test_declared_variables_and_aliases_are_not_unknown_and_others_are(caplog):
    read({"RECSYS_MY_ENGINE_DEPTH": "2", "RECSYS_MINE_DEPTH": "2", "RECSYS_MY_ENGINE_DEPHT": "2"})
    assert caplog.text.count("ignoring unknown setting") == 1
    assert "RECSYS_MY_ENGINE_DEPHT (did you mean RECSYS_MY_ENGINE_DEPTH?)" in caplog.text
    assert "RECSYS_MY_ENGINE_DEPTH," not in caplog.text and "RECSYS_MINE_DEPTH" not in caplog.text
    assert "plugins with settings: my-engine" in caplog.text


def test_without_the_plugin_its_variables_are_unknown_but_still_reach_it(caplog):
    # Given a process that did not find the declaration (the plugin's entry point is missing)
    settings = Settings.from_env({"RECSYS_MY_ENGINE_DEPTH": "4"}, env_file=None, plugins=())
    # then the variable is warned about, and the plugin still reads its value
    assert "RECSYS_MY_ENGINE_DEPTH" in caplog.text
    assert settings.plugin(MINE).depth == 4


def test_an_alias_is_read_and_conflicts_with_the_name_when_they_differ():
    assert read({"RECSYS_MINE_DEPTH": "5"}).plugin(MINE).depth == 5
    assert read({"RECSYS_MINE_DEPTH": "5", "RECSYS_MY_ENGINE_DEPTH": "5"}).plugin(MINE).depth == 5
    with pytest.raises(ConfigError) as info:
        read({"RECSYS_MINE_DEPTH": "5", "RECSYS_MY_ENGINE_DEPTH": "6"})
    message = str(info.value)
    assert "RECSYS_MY_ENGINE_DEPTH='6'" in message and "RECSYS_MINE_DEPTH='5'" in message
    assert "set only RECSYS_MY_ENGINE_DEPTH" in message


def test_a_bad_alias_value_names_the_alias():
    with pytest.raises(ConfigError, match=r"^RECSYS_MINE_DEPTH='99' is not valid"):
        read({"RECSYS_MINE_DEPTH": "99"})


def test_the_environment_wins_over_the_env_file_for_a_name_and_its_alias(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("RECSYS_MY_ENGINE_DEPTH=2\nRECSYS_MY_ENGINE_MODE=exact\n")
    settings = read({"RECSYS_MINE_DEPTH": "8"}, env_file)
    assert settings.plugin(MINE) == MineSettings(depth=8, mode="exact")
    env_file.write_text("RECSYS_MINE_DEPTH=2\n")
    assert read({"RECSYS_MY_ENGINE_DEPTH": "9"}, env_file).plugin(MINE).depth == 9


def test_with_plugin_changes_typed_values_and_checks_them():
    settings = Settings(keep_engines=3).with_plugin(MINE, depth=9, verbose=True, token=None)
    assert settings.plugin(MINE) == MineSettings(depth=9, verbose=True)
    assert settings.keep_engines == 3
    assert settings.with_plugin(MINE, depth=1).plugin(MINE).depth == 1
    with pytest.raises(ConfigError, match="RECSYS_MY_ENGINE_DEPTH='0' is not valid"):
        settings.with_plugin(MINE, depth=0)
    with pytest.raises(TypeError, match="no setting 'width'; its settings: depth, mode, token, verbose"):
        settings.with_plugin(MINE, width=2)


def test_settings_round_trip_through_the_environment_with_plugin_values(tmp_path):
    settings = Settings(data_dir=tmp_path, api_token="t").with_plugin(MINE, depth=6, mode="exact")
    rebuilt = Settings.from_env(settings.environ(), env_file=None, plugins=[MINE])
    assert rebuilt == settings
    assert rebuilt.plugin(MINE) == MineSettings(depth=6, mode="exact")


def test_redacted_plugin_values_hide_secrets():
    settings = read({"RECSYS_MY_ENGINE_TOKEN": "s3cret"})
    assert settings.plugin(MINE).token == "s3cret"
    assert settings.redacted_plugin(MINE)["RECSYS_MY_ENGINE_TOKEN"] == "***"
    assert "s3cret" not in repr(settings)


def test_asking_for_an_undeclared_plugin_by_name_says_what_is_declared():
    declared = r"no installed plugin declares settings named 'other' \(declared: my-engine\)"
    with pytest.raises(ConfigError, match=declared):
        read({}).plugin("other")


@pytest.mark.parametrize(
    ("declare", "problem"),
    [
        (lambda: PluginSettings("Mine", (), dict), "its name must be lowercase"),
        (lambda: PluginSettings("m", (Field("a", parse_text, "", "h"), Field("a", parse_text, "", "h")), dict),
         "setting 'a' is declared twice"),
        (lambda: PluginSettings("m", (Field("Bad", parse_text, "", "h"),), dict), "'Bad' must be a lowercase"),
        (lambda: PluginSettings("m", (Field("a", parse_text, "", "h", aliases=("MODEL",)),), dict),
         "alias 'MODEL' of 'a' must start with RECSYS_"),
        (lambda: PluginSettings("m", (Field("a", parse_text, "", "h", aliases=("RECSYS_ENGINE",)),), dict),
         "alias 'RECSYS_ENGINE' of 'a' must start with RECSYS_ and not be a setting of the core"),
    ],
)
def test_a_malformed_declaration_is_refused_saying_why(declare, problem):
    with pytest.raises(ValueError, match=r"the settings of plugin '\w+' are malformed: .*" + problem):
        declare()


# -- discovery through entry points ---------------------------------------------------

HERE = __name__


def test_discovery_loads_declarations_and_skips_broken_ones(caplog):
    caplog.set_level(logging.WARNING)
    entry_points = [
        EntryPoint("my-engine", f"{HERE}:MINE", SETTINGS_GROUP),
        EntryPoint("missing", "no_such_module_here:SETTINGS", SETTINGS_GROUP),
        EntryPoint("wrong", f"{HERE}:MineSettings", SETTINGS_GROUP),
        EntryPoint("renamed", f"{HERE}:MINE", SETTINGS_GROUP),
    ]
    assert discover_plugin_settings(entry_points) == (MINE,)
    assert "plugin 'missing'" in caplog.text and "ModuleNotFoundError" in caplog.text
    assert "plugin 'wrong'" in caplog.text and "not a recsys.config.PluginSettings" in caplog.text
    assert "plugin 'renamed'" in caplog.text and "is named 'my-engine'" in caplog.text


def _installed(where: Path, dist: str, groups: dict[str, dict[str, str]]) -> Path:
    """A ``.dist-info`` folder under ``where``, as pip writes it for an installed distribution."""
    info = where / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    text = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items())
    (info / "entry_points.txt").write_text(text)
    return where


def _annoy_entry_points() -> dict[str, dict[str, str]]:
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "plugins" / "recsys-engine-annoy" / "setup.cfg")
    groups = {}
    for group in ("recsys.engines", SETTINGS_GROUP):
        lines = [line for line in config.get("options.entry_points", group).splitlines() if line.strip()]
        groups[group] = {n.strip(): v.strip() for n, _, v in (line.partition("=") for line in lines)}
    return groups


def test_recsys_settings_lists_an_installed_plugins_settings_under_its_name(tmp_path):
    # Given the annoy plugin installed with the entry points of its setup.cfg
    site = _installed(tmp_path / "site", "recsys-engine-annoy", _annoy_entry_points())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), str(ROOT / "plugins" / "recsys-engine-annoy"),
                                        env.get("PYTHONPATH", "")])
    env.update(RECSYS_MODEL="/models/mine", RECSYS_ANNOY_TREES="12", RECSYS_ANN_SEARCH_K="5")
    code = ("import sys; from recsys.cli import main; code = main(['settings']); "
            "print('heavy:', sorted(m for m in ('numpy', 'annoy', 'torch') if m in sys.modules)); sys.exit(code)")
    # When running `recsys settings`
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    # Then they are listed under the plugin, with the alias read, and only the old name is unknown;
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index("# plugin annoy: the default engine: SentenceTransformer sentence embeddings searched "
                        "with Annoy")
    assert lines[start + 1] == "RECSYS_ANNOY_MODEL=/models/mine  # also read as RECSYS_MODEL"
    assert "RECSYS_ANNOY_TREES=12" in lines[start:]
    assert "RECSYS_ANN_SEARCH_K (did you mean RECSYS_ANNOY_SEARCH_K?)" in out.stderr
    assert "RECSYS_ANNOY_TREES" not in out.stderr and "RECSYS_MODEL" not in out.stderr
    # and reading them imported neither the engine nor its libraries.
    assert "heavy: []" in out.stdout
