"""Each line of the SDK tables (README's "Sending events", docs/sdks.md) names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER = ROOT / "tests" / "browser" / "test_browser_sdks.py"
SERVER = ROOT / "tests" / "sdk" / "test_server_and_mobile_sdks.py"


def _section(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    return text.split(heading, 1)[1].split("\n## ", 1)[0] if heading else text


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("SDK",) and not set(cells[0]) <= set("-"):
            rows.append(cells)
    return rows


def _known_tests() -> tuple[set[str], set[str]]:
    """(test function names, browser scenario and mobile parameter ids) defined in the SDK test modules."""
    source = BROWSER.read_text() + SERVER.read_text()
    functions = set(re.findall(r"^def (test_\w+)\(", source, re.M))
    ids = set(re.findall(r'Scenario\("([\w-]+)"', source)) | set(re.findall(r'^    "([\w-]+)": \(\w+_CONTEXT', source, re.M))
    return functions, ids


@pytest.mark.parametrize(("page", "heading"), [(ROOT / "README.md", "## Sending events"), (ROOT / "docs" / "sdks.md", "")])
def test_every_sdk_line_names_tests_that_exist(page: Path, heading: str) -> None:
    functions, ids = _known_tests()
    rows = _table_rows(_section(page, heading))
    assert len(rows) >= 9, rows  # browser, server and mobile lines
    for sdk, _, test in rows:
        names = re.findall(r"`([^`]+)`", test)
        assert names, f"{sdk}: no test named"
        for name in names:
            if name.endswith(".py"):
                assert (ROOT / name).is_file(), name
                continue
            function, _, param = re.sub(r"^\.\.\.|^.*::", "", name).partition("[")
            param = param.rstrip("]")
            if function.startswith("test_"):
                assert function in functions, f"{sdk}: {function} is not a test"
            else:
                param = function  # a scenario id alone
            if param:
                assert param in ids, f"{sdk}: {param} is not a scenario of the SDK tests"
