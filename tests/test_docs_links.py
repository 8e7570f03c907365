"""The documentation stands on its own: no citation of a document outside the repository, no broken link."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Built from parts so that this file does not match itself.
FORBIDDEN = ("CONTRACT" + ".md", "contract " + "section", "../" + "shared")


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _repository_files() -> list[Path]:
    """Every text file git tracks or would track (untracked but not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def _links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_slug_follows_githubs_rule() -> None:
    assert _slug("Backtest: other rules on stored events") == "backtest-other-rules-on-stored-events"
    assert _slug("Triggers on cx.triggers") == "triggers-on-cxtriggers"
    assert _slug("offers_daily and uplift") == "offers_daily-and-uplift"
    assert _slug("The `support_risk` trigger") == "the-support_risk-trigger"


def test_no_file_cites_a_document_outside_the_repository() -> None:
    found = []
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary data
        for n, line in enumerate(text.splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{n}: {word}" for word in FORBIDDEN if word.lower() in line.lower()]
    assert not found, "say the rule itself, or link the project's own docs/ page:\n" + "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page: Path) -> None:
    broken = []
    for target in _links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_readme_front_page_fits_under_300_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 300, f"README.md has {len(lines)} lines: move the detail to a docs/ page"


def test_readme_states_the_two_commands_exactly() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash infra/run.sh demo" in text
    assert "bash infra/run.sh test" in text  # .ci/run runs exactly this


def test_readme_diagram_and_code_fit_in_100_columns() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    wide = [line for block in _FENCE.findall(text) for line in block.splitlines() if len(line) > 100]
    assert not wide, "lines over 100 columns in README code blocks:\n" + "\n".join(wide)


_SQL = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)


def test_sql_examples_are_found_on_every_page_that_shows_them() -> None:
    counts = {p.name: len(_SQL.findall(p.read_text(encoding="utf-8"))) for p in PAGES}
    # A block may hold several statements (clickhouse.md's holds two).
    assert {name: n for name, n in counts.items() if n} == {
        "README.md": 1, "clickhouse.md": 1, "delivery.md": 1, "detection.md": 7, "events.md": 1, "offers.md": 3,
    }  # fmt: skip


def test_every_sql_example_runs_on_the_migrated_schema(ch_backend) -> None:  # noqa: ANN001
    """Each example parses and runs on the current tables and views (on empty data: the names are right)."""
    failed = []
    for page in PAGES:
        for block in _SQL.findall(page.read_text(encoding="utf-8")):
            for statement in block.split(";"):
                sql = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--")).strip()
                if not sql:
                    continue
                try:
                    ch_backend.query(sql)
                except Exception as exc:  # noqa: BLE001 - collect every failure, then report them together
                    failed.append(f"{page.relative_to(ROOT)}: {sql.splitlines()[0]} ...: {str(exc)[:200]}")
    assert not failed, "\n".join(failed)


def test_readme_security_table_names_every_listener_of_security_md() -> None:
    """README's short listener table and docs/security.md's (which a running `up` is checked against) agree."""
    from tests.security.test_listeners import doc_table

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Security\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] != "listener" and not set(cells[0]) <= set("-"):
            rows[cells[0]] = cells[1]
    named = {role: next((r for r in rows if r.startswith(role) or f", {role}" in r), None) for role in doc_table()}
    assert None not in named.values(), named
    for role, (_, credentials) in doc_table().items():
        assert (rows[named[role]].startswith("none")) == (credentials == "none"), role
    assert "Every listener is on 127.0.0.1" in section
