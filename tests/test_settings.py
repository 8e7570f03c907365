"""Settings: CX_ variables, parsing of write keys, errors that name the variable."""

from __future__ import annotations

import pytest

from pipeline.settings import Settings, SettingsError, parse_write_keys


def test_write_keys_parse_into_key_to_tenant_map() -> None:
    assert parse_write_keys("k1=shop-a, k2=shop-b") == {"k1": "shop-a", "k2": "shop-b"}


@pytest.mark.parametrize("raw", ["k1", "=shop", "k1=", "k1=a,k1=b", " , "])
def test_malformed_write_keys_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_write_keys(raw)


def test_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_COLLECTOR_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="CX_COLLECTOR_PORT"):
        Settings.load(_env_file=None)


def test_bad_clickhouse_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_CLICKHOUSE_URL", "mysql://x")
    with pytest.raises(SettingsError, match="CX_CLICKHOUSE_URL"):
        Settings.load(_env_file=None)


def test_empty_clickhouse_url_means_chdb_in_data_dir(tmp_path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert s.resolved_clickhouse_url == f"chdb://{tmp_path.resolve()}/clickhouse"


def test_sasl_settings_become_librdkafka_options() -> None:
    s = Settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert s.kafka_client_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
    }


def test_allowed_origins_default_to_any() -> None:
    assert Settings(_env_file=None).allowed_origins == ()


def test_allowed_origins_parse_a_list_lowercased() -> None:
    s = Settings(_env_file=None, collector_allowed_origins="https://Shop.example, http://127.0.0.1:8000")
    assert s.allowed_origins == ("https://shop.example", "http://127.0.0.1:8000")


@pytest.mark.parametrize("raw", ["shop.example", "https://shop.example/", "ftp://x", "*,https://a.example", " , "])
def test_malformed_allowed_origins_name_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CX_COLLECTOR_ALLOWED_ORIGINS", raw)
    with pytest.raises(SettingsError, match="CX_COLLECTOR_ALLOWED_ORIGINS"):
        Settings.load(_env_file=None)


def test_customers_topic_follows_the_events_topic_unless_set() -> None:
    assert Settings(_env_file=None).customers_topic == "cx.customers"
    assert Settings(_env_file=None, topic_events="shop1.events").customers_topic == "shop1.customers"
    assert Settings(_env_file=None, topic_events="events-eu").customers_topic == "events-eu.customers"
    assert Settings(_env_file=None, topic_customers="mine").customers_topic == "mine"
