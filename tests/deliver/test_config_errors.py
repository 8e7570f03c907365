"""A wrong delivery config is a ``ConfigError`` naming the file, the destination and the rule; never a traceback.

The sweep's cases: a binary file, nesting past the parser's recursion, a
URL ``urlsplit`` refuses or whose port is out of range (it passed, then
``Destination.where`` crash-looped ``cxstream deliver``), and a secret that
is not UTF-8 text (HMAC signs bytes). The CLI prints a ``ConfigError`` as
one line and exits 2 (``tests/deliver/test_cli_deliver.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.deliver.config import ConfigError, load_destinations, parse_destinations
from pipeline.settings import Settings

SETTINGS = Settings(_env_file=None)
SECRET = "0123456789abcdef"


def load(path: Path, environ: dict[str, str] | None = None) -> list:
    return load_destinations(SETTINGS.model_copy(update={"delivery_config": str(path)}), environ)


def refused(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load(path, environ)
    message = str(err.value)
    assert "\n" not in message
    return message


def hooks(tmp_path: Path, **destination: object) -> Path:
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps({"destination": [{"name": "esp", **destination}]}))
    return path


def test_a_binary_config_file_is_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "hooks.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    assert refused(path) == f"{path}: not valid TOML: not UTF-8 text (byte 0)"


def test_json_nested_100k_deep_is_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "hooks.json"
    path.write_text('{"destination": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert refused(path) == f"{path}: not valid JSON: arrays or tables nested too deeply"


def test_toml_nested_100k_deep_is_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "hooks.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert refused(path) == f"{path}: not valid TOML: arrays or tables nested too deeply"


def test_a_url_with_a_bracket_left_open_is_refused(tmp_path: Path) -> None:
    path = hooks(tmp_path, url="http://[::1/x", secret=SECRET)
    assert refused(path) == f"{path}: destination 'esp': url: expected an http:// or https:// URL (Invalid IPv6 URL)"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:99999/x", " (Port out of range 0-65535)"),
        ("https://h:65536/x", " (Port out of range 0-65535)"),
        ("http://h:http/x", " (Port could not be cast to integer value as 'http')"),
        ("http://h:0/x", ", got 0"),
    ],
)
def test_a_url_whose_port_is_out_of_range_is_refused_when_loaded(tmp_path: Path, url: str, reason: str) -> None:
    path = hooks(tmp_path, url=url, secret=SECRET)
    assert refused(path) == f"{path}: destination 'esp': url: the port must be a number within 1..65535{reason}"


@pytest.mark.parametrize(("url", "where"), [
    ("https://h.example:65535/cx?token=abc", "https://h.example:65535/cx"),
    ("http://[::1]:8080/hook", "http://::1:8080/hook"),
    ("http://h.example:/x", "http://h.example/x"),
])  # fmt: skip
def test_a_url_with_a_port_in_range_is_taken_and_logged_without_its_query(tmp_path: Path, url: str, where: str) -> None:
    (d,) = load(hooks(tmp_path, url=url, secret=SECRET))
    assert d.where == where


def test_a_secret_with_a_lone_surrogate_is_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "hooks.json"
    path.write_text('{"destination": [{"name": "esp", "url": "http://h/x", "secret": "0123456789abcdef\\ud800"}]}')
    message = refused(path)
    assert message == f"{path}: destination 'esp': secret: not UTF-8 text (a lone surrogate such as \\ud800)"
    assert "0123456789abcdef" not in message


def test_a_secret_env_value_with_a_byte_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    # os.environ holds the byte \xff of a non-UTF-8 value as the lone surrogate \udcff.
    path = hooks(tmp_path, url="http://h/x", secret_env="HOOK_SECRET")
    message = refused(path, {"HOOK_SECRET": "0123456789abcdef\udcff"})
    assert message == f"{path}: destination 'esp': secret_env: the environment variable HOOK_SECRET is not UTF-8 text"
    assert "0123456789abcdef" not in message


def test_a_config_file_that_is_a_directory_cannot_be_read(tmp_path: Path) -> None:
    assert refused(tmp_path) == f"CX_DELIVERY_CONFIG: cannot read {tmp_path}: Is a directory"


def test_parse_destinations_refuses_an_out_of_range_port_too() -> None:
    raw = {"name": "esp", "url": "http://h:99999/x", "secret": SECRET}
    with pytest.raises(ConfigError, match=r"^hooks.toml: destination 'esp': url: the port must be a number"):
        parse_destinations({"destination": [raw]}, SETTINGS, "hooks.toml")
