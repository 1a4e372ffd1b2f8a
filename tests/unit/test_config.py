"""Settings: parsing, validation messages, .env handling, and .env.example kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recsys.config import FIELDS, Settings, parse_cron, read_env_file
from recsys.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_of_the_table_and_the_dataclass_agree():
    # Given no variable at all, when parsing, then we get exactly the dataclass defaults.
    assert Settings.from_env({}, env_file=None) == Settings()


def test_env_example_lists_every_setting_with_its_default_and_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    assignments = {}
    for index, line in enumerate(lines):
        match = re.match(r"^(RECSYS_[A-Z0-9_]+)=(.*)$", line)
        if match:
            assert lines[index - 1].startswith("# "), f"{match.group(1)} has no comment line above it"
            assignments[match.group(1)] = match.group(2)
    assert assignments == {f.env: f.default for f in FIELDS}


def test_env_example_parses_to_the_defaults():
    assert Settings.from_env({}, env_file=ROOT / ".env.example") == Settings()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RECSYS_REQUEST_TIMEOUT", "abc", "expected a whole number of seconds from 1 to 600"),
        ("RECSYS_REQUEST_TIMEOUT", "0", "from 1 to 600"),
        ("RECSYS_BROKER_URL", "redis://x", "expected a URL starting with amqp:// or amqps://"),
        ("RECSYS_RESULTS_URL", "http://x", "redis://"),
        ("RECSYS_API_URL", "127.0.0.1:8000", "http://"),
        ("RECSYS_ENGINE", "Bad Name", "lowercase letters"),
        ("RECSYS_EMBEDDING_BACKEND", "tpu", "expected one of: auto, torch, onnx, onnx-int8"),
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
    Settings.from_env({"RECSYS_ENGNIE": "lexical"}, env_file=None)
    assert "RECSYS_ENGNIE" in caplog.text


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
    for field in FIELDS:
        default = f"`{field.default}`" if field.default else "(empty)"
        assert f"| `{field.env}` | {default} |" in readme, f"README's configuration table lacks {field.env}"
