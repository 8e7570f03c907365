"""docs/configuration.md is generated from the settings' declarations and must not go stale."""

from __future__ import annotations

import pytest

from pipeline.tools import docs_config
from pipeline.settings import Settings


def test_configuration_page_is_what_the_settings_render() -> None:
    on_disk = docs_config.PAGE.read_text(encoding="utf-8") if docs_config.PAGE.exists() else ""
    assert on_disk == docs_config.render(), (
        f"docs/configuration.md is stale: run `.venv/bin/{docs_config.REGENERATE}` to regenerate it"
    )


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_description(name: str) -> None:
    description = Settings.model_fields[name].description
    assert description and description.strip(), (
        f"{name} has no description: add description= to its Field in pipeline/settings.py "
        f"(it becomes the meaning of {docs_config.env_var(name)} in docs/configuration.md)"
    )


def test_variable_names_are_the_ones_pydantic_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_ABANDON_AFTER_MS", "120000")
    assert docs_config.env_var("abandon_after_ms") == "CX_ABANDON_AFTER_MS"
    assert Settings(_env_file=None).abandon_after_ms == 120_000


def test_a_duration_row_gives_default_readable_form_bounds_and_description() -> None:
    rows = {row[0]: row for row in docs_config.setting_rows()}
    assert rows["`CX_ABANDON_AFTER_MS`"] == (
        "`CX_ABANDON_AFTER_MS`",
        "`1800000` (30 min)",
        "integer, > 0",
        "cart inactivity (event time) after which a cart with items is abandoned",
    )


def test_a_choice_row_lists_the_choices_and_an_empty_default_says_so() -> None:
    rows = {row[0]: row for row in docs_config.setting_rows()}
    assert rows["`CX_TRIGGER_FORMAT`"][1:3] == ("`json`", "`json`, `avro`")
    assert rows["`CX_KAFKA_BOOTSTRAP`"][1:3] == ("(empty)", "text")
    assert rows["`CX_COLLECTOR_MAX_INFLIGHT_BYTES`"][1] == "`67108864` (64 MiB)"


def test_a_pipe_in_a_description_does_not_split_the_table_cell() -> None:
    assert docs_config._cell("a|b") == "a\\|b"


def test_check_mode_fails_with_the_command_when_the_page_differs(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(docs_config, "PAGE", page)
    assert docs_config.main(["--check"]) == 1
    assert "python -m pipeline.tools.docs_config" in capsys.readouterr().err
    assert docs_config.main([]) == 0
    assert docs_config.main(["--check"]) == 0
    assert page.read_text(encoding="utf-8") == docs_config.render()
