"""Fuzzing the settings: any text in any ``CX_`` variable is a configuration error or a working setting.

Each example sets a few of the settings' variables to arbitrary text (any
Unicode but NUL, which no environment can hold; numbers, signs, units,
URLs, lists, the empty string), then loads the settings as every command
does. Either ``SettingsError`` names what is wrong (the command prints it
and exits 2), or the settings load, and what the commands derive from them
(the customers topic, the Kafka client configuration, the ClickHouse URL,
the write keys, the CORS origins, the variables handed to child processes)
is built without an exception; the settings handed to a child process load
again to the same settings.

Not an integration test: nothing starts.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.settings import Settings, SettingsError
from tests.fuzz.conftest import RUN_LENGTHS, fuzz_settings

VARIABLES = sorted(f"CX_{name.upper()}" for name in Settings.model_fields)
values = st.one_of(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "true", "no", "1_000", "0x10", "5ms", "[]", "{}", "a,b",
                     "clickhouse://", "chdb://", "http://[::1", "=", "*", "..", "/", "\t", "é", "9" * 40]),
)


@pytest.mark.parametrize("run", RUN_LENGTHS)
def test_any_text_in_any_setting_is_refused_by_name_or_works(run) -> None:
    outcome = {"loaded": 0, "refused": 0}

    @fuzz_settings(run, 300)
    @given(chosen=st.dictionaries(st.sampled_from(VARIABLES), values, min_size=1, max_size=4))
    def example(chosen: dict[str, str]) -> None:
        kept = {name: value for name, value in os.environ.items() if name.startswith("CX_")}
        for name in kept:
            del os.environ[name]
        os.environ.update(chosen)
        try:
            try:
                settings = Settings.load(_env_file=None)
            except SettingsError as exc:
                assert str(exc).startswith("invalid configuration"), exc
                outcome["refused"] += 1
                return
            outcome["loaded"] += 1
            settings.customers_topic, settings.kafka_client_config(), settings.resolved_clickhouse_url
            settings.write_key_map, settings.allowed_origins, settings.embedded_kafka
            handed = settings.to_env()
            for name in chosen:
                del os.environ[name]
            os.environ.update(handed)
            assert Settings.load(_env_file=None) == settings
        finally:
            for name in [name for name in os.environ if name.startswith("CX_")]:
                del os.environ[name]
            os.environ.update(kept)

    example()
    assert outcome["loaded"] > 0 and outcome["refused"] > 0, outcome
