"""Settings: parsing, validation messages, .env handling, and .env.example and the README
kept in step with the core's FIELDS and with every plugin's declared settings."""

from __future__ import annotations

import configparser
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from recsys.config import FIELDS, PluginSettings, Settings, parse_cron, read_env_file
from recsys.errors import ConfigError
from recsys.registry import SETTINGS_GROUP, discover_plugin_settings

ROOT = Path(__file__).resolve().parents[2]


def repository_plugin_settings() -> tuple[PluginSettings, ...]:
    """The settings the plugins of this repository declare, from their setup.cfg entry points."""
    entry_points = []
    for setup_cfg in sorted((ROOT / "plugins").glob("*/setup.cfg")):
        config = configparser.ConfigParser()
        config.read(setup_cfg)
        for line in config.get("options.entry_points", SETTINGS_GROUP, fallback="").splitlines():
            if line.strip():
                name, _, value = line.partition("=")
                entry_points.append(EntryPoint(name.strip(), value.strip(), SETTINGS_GROUP))
    return discover_plugin_settings(entry_points)


PLUGIN_SETTINGS = repository_plugin_settings()
PLUGIN_FIELDS = [field for plugin in PLUGIN_SETTINGS for field in plugin.fields]


def test_the_repository_plugins_declare_settings():
    assert [p.name for p in PLUGIN_SETTINGS] == ["annoy"]


def test_defaults_of_the_table_and_the_dataclass_agree():
    # Given no variable at all, when parsing, then we get exactly the dataclass defaults.
    assert Settings.from_env({}, env_file=None, plugins=()) == Settings()
    assert Settings.from_env({}, env_file=None, plugins=PLUGIN_SETTINGS) == Settings()


@pytest.mark.parametrize("plugin", PLUGIN_SETTINGS, ids=lambda p: p.name)
def test_defaults_of_a_plugins_fields_and_its_class_agree(plugin):
    assert plugin.defaults() == plugin.factory()


def _env_example_assignments(commented: bool) -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pattern = r"^#(RECSYS_[A-Z0-9_]+)=(.*)$" if commented else r"^(RECSYS_[A-Z0-9_]+)=(.*)$"
    assignments = {}
    for index, line in enumerate(lines):
        match = re.match(pattern, line)
        if match:
            assert lines[index - 1].startswith("# "), f"{match.group(1)} has no comment line above it"
            assignments[match.group(1)] = (match.group(2), lines[index - 1][2:])
    return assignments


def test_env_example_lists_every_setting_with_its_default_and_a_comment():
    assignments = _env_example_assignments(commented=False)
    assert {k: v for k, (v, _) in assignments.items()} == {f.env: f.default for f in FIELDS}


def test_env_example_lists_every_plugin_setting_commented_out_with_its_default_and_help():
    # Commented out: a process without the plugin (the API image) must not see them as unknown.
    assignments = _env_example_assignments(commented=True)
    assert assignments == {f.env: (f.default, f.help) for f in PLUGIN_FIELDS}


def test_env_example_parses_to_the_defaults(tmp_path):
    assert Settings.from_env({}, env_file=ROOT / ".env.example", plugins=PLUGIN_SETTINGS) == Settings()
    # and with every plugin line uncommented, to each plugin's defaults
    uncommented = tmp_path / ".env"
    uncommented.write_text(re.sub(r"(?m)^#(RECSYS_)", r"\1", (ROOT / ".env.example").read_text()))
    settings = Settings.from_env({}, env_file=uncommented, plugins=PLUGIN_SETTINGS)
    for plugin in PLUGIN_SETTINGS:
        assert settings.plugin(plugin) == plugin.defaults()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RECSYS_REQUEST_TIMEOUT", "abc", "expected a whole number of seconds from 1 to 600"),
        ("RECSYS_REQUEST_TIMEOUT", "0", "from 1 to 600"),
        ("RECSYS_BROKER_URL", "redis://x", "expected a URL starting with amqp:// or amqps://"),
        ("RECSYS_RESULTS_URL", "http://x", "redis://"),
        ("RECSYS_API_URL", "127.0.0.1:8000", "http://"),
        ("RECSYS_ENGINE", "Bad Name", "lowercase letters"),
        ("RECSYS_LOG_LEVEL", "loud", "expected one of: debug, info, warning, error"),
        ("RECSYS_KEEP_ENGINES", "1", "expected a whole number from 2 to 100"),
        ("RECSYS_REBUILD_CRON", "61 * * * *", "cron field 1"),
        ("RECSYS_REBUILD_CRON", "every day", "five fields"),
        ("RECSYS_SOURCE", "ftp://host/file", "http(s)://"),
        ("RECSYS_SOURCE_TIMEOUT", "-1", "a number of seconds from 0.1 to 3600"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_expected(variable, value, expected):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value}, env_file=None)
    message = str(info.value)
    secret = {f.env for f in FIELDS if f.secret}
    shown = "'***'" if variable in secret else repr(value)
    assert variable in message and shown in message and expected in message


def test_a_bad_secret_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RECSYS_BROKER_URL": "redis://user:hunter2@host"}, env_file=None)
    assert "hunter2" not in str(info.value) and "RECSYS_BROKER_URL" in str(info.value)


def test_values_are_typed():
    settings = Settings.from_env(
        {
            "RECSYS_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
            "RECSYS_REQUEST_TIMEOUT": "12",
            "RECSYS_DATA_DIR": "/srv/recsys",
            "RECSYS_START_ENGINE": "",
            "RECSYS_SOURCE_TIMEOUT": "2.5",
            "RECSYS_REBUILD_CRON": "0 3 * * mon-fri",
            "RECSYS_MAX_BODY_BYTES": "2_000_000",
        },
        env_file=None,
    )
    assert settings.request_timeout == 12
    assert settings.data_dir == Path("/srv/recsys")
    assert settings.start_engine is None
    assert settings.source_timeout == 2.5
    assert settings.max_body_bytes == 2_000_000
    assert settings.rebuild_cron == "0 3 * * mon-fri"
    assert not settings.embedded


def test_embedded_when_no_broker():
    assert Settings.from_env({}, env_file=None).embedded


def test_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport RECSYS_ENGINE=lexical\nRECSYS_REQUEST_TIMEOUT='7'\nRECSYS_API_TOKEN=abc # trailing\n"
    )
    settings = Settings.from_env({"RECSYS_REQUEST_TIMEOUT": "9"}, env_file=env_file)
    assert settings.engine == "lexical"
    assert settings.request_timeout == 9
    assert settings.api_token == "abc"


def test_a_missing_env_file_is_fine(tmp_path):
    assert Settings.from_env({}, env_file=tmp_path / "absent") == Settings()


def test_a_malformed_env_file_line_is_an_error(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("RECSYS_ENGINE lexical\n")
    with pytest.raises(ConfigError, match=r"\.env:1: expected KEY=value"):
        read_env_file(env_file)


def test_unknown_recsys_variables_are_warned_about(caplog):
    Settings.from_env({"RECSYS_ENGNIE": "lexical", "RECSYS_WHATEVER": "1"}, env_file=None, plugins=())
    assert "RECSYS_ENGNIE (did you mean RECSYS_ENGINE?)" in caplog.text
    assert "RECSYS_WHATEVER" in caplog.text


def test_known_variables_are_not_warned_about(caplog):
    Settings.from_env({"RECSYS_ENGINE": "lexical", "OTHER": "x"}, env_file=None, plugins=())
    assert caplog.text == ""


def test_redacted_hides_passwords_and_tokens():
    settings = Settings.from_env(
        {"RECSYS_BROKER_URL": "amqp://user:s3cret@mq:5672/%2F", "RECSYS_API_TOKEN": "tok"}, env_file=None
    )
    shown = settings.redacted()
    assert shown["RECSYS_BROKER_URL"] == "amqp://user:***@mq:5672/%2F"
    assert shown["RECSYS_API_TOKEN"] == "***"
    assert "tok" not in repr(settings)


@pytest.mark.parametrize("spec", ["@daily", "*/15 * * * *", "0 3 * * 1-5", "0 0 1,15 * *", "5 4 * * sun"])
def test_valid_cron_expressions(spec):
    assert parse_cron(spec) == spec


def test_the_readme_configuration_table_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for field in [*FIELDS, *PLUGIN_FIELDS]:
        default = f"`{field.default}`" if field.default else "(empty)"
        row = f"| `{field.env}` | {default} | {field.help} |"
        assert row in readme, f"README's configuration table lacks {field.env} (or has another default or help)"
