"""Settings from a file and env: env wins, bad values name the setting, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from choreo import ConfigError, load_config


def test_env_overrides_the_file_and_reaches_nested_kafka_settings(tmp_path: Path) -> None:
    file = tmp_path / "service.toml"
    file.write_text(
        'transport = "aiokafka"\nmax_in_flight = 50\n[kafka]\nsasl_username = "file-user"\n'
    )
    config = load_config(
        file,
        environ={
            "CHOREO_MAX_IN_FLIGHT": "7",
            "CHOREO_BOOTSTRAP_SERVERS": "broker:9093",
            "CHOREO_KAFKA__SASL_USERNAME": "env-user",
            "UNRELATED": "x",
        },
    )
    assert config.transport == "aiokafka"
    assert config.max_in_flight == 7
    assert config.kafka.bootstrap_servers == "broker:9093"
    assert config.kafka.sasl_username == "env-user"


def test_a_bad_value_names_the_setting_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid settings \(env\): transport"):
        load_config(environ={"CHOREO_TRANSPORT": "carrier-pigeon"})


def test_secrets_never_show_in_repr() -> None:
    config = load_config(environ={"CHOREO_KAFKA__SASL_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(config)
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "hunter2"


def test_the_schema_registry_table_is_reached_from_file_and_env_and_always_has_a_timeout(
    tmp_path: Path,
) -> None:
    file = tmp_path / "service.toml"
    file.write_text('[schema_registry]\nurl = "http://file:1/apis/ccompat/v7"\ntimeout_s = 2.5\n')
    config = load_config(file, environ={"CHOREO_SCHEMA_REGISTRY__URL": "http://env:2/ccompat"})
    assert config.schema_registry.url == "http://env:2/ccompat"
    assert config.schema_registry.client_conf() == {"url": "http://env:2/ccompat", "timeout": 2.5}
    assert load_config(environ={}).schema_registry.timeout_s > 0
    with pytest.raises(ConfigError, match=r"schema_registry.timeout_s"):
        load_config(environ={"CHOREO_SCHEMA_REGISTRY__TIMEOUT_S": "0"})
