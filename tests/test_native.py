"""Compiled copies of the hot path (pipeline/native.py): used only while they match their source, same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import native

REPO = Path(__file__).resolve().parent.parent


def _python(code: str, *, env: dict[str, str] | None = None, path: Path | None = None) -> dict:
    """Runs ``code`` in a fresh interpreter (nothing imported yet) and returns the JSON it prints."""
    environ = {k: v for k, v in os.environ.items() if k != "CX_NATIVE"}
    environ.update(env or {})
    if path is not None:
        environ["PYTHONPATH"] = f"{path}{os.pathsep}{environ.get('PYTHONPATH', '')}"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _probe_package(root: Path, answer: int) -> None:
    package = root / "cxprobe"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "hot.py").write_text(f"def answer():\n    return {answer}\n")


IMPORT_PROBE = """
    import json, sys
    from pathlib import Path
    from pipeline import native
    sys.meta_path.insert(0, native.Finder(("cxprobe.hot",), Path({directory!r})))
    import cxprobe.hot as hot
    print(json.dumps({{"answer": hot.answer(), "compiled": native.is_compiled(hot)}}))
"""


def test_a_compiled_copy_is_used_until_its_source_is_edited(tmp_path: Path) -> None:
    _probe_package(tmp_path, answer=1)
    directory = tmp_path / "_native"
    built = native.build(("cxprobe.hot",), directory=directory, root=tmp_path, log=lambda _line: None)
    assert [p.parent for p in built] == [directory]
    code = IMPORT_PROBE.format(directory=str(directory))

    assert _python(code, path=tmp_path) == {"answer": 1, "compiled": True}

    _probe_package(tmp_path, answer=2)  # edited after the build: the copy is stale
    assert _python(code, path=tmp_path) == {"answer": 2, "compiled": False}
    assert native.status(("cxprobe.hot",), directory, tmp_path) == [native.Status("cxprobe.hot", "stale")]

    native.build(("cxprobe.hot",), directory=directory, root=tmp_path, log=lambda _line: None)
    assert _python(code, path=tmp_path) == {"answer": 2, "compiled": True}
    assert len(list(directory.glob("cxprobe.hot-*"))) == 1  # the stale copy was removed


def test_a_module_that_does_not_compile_is_a_clear_error(tmp_path: Path) -> None:
    package = tmp_path / "cxbroken"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("def f(:\n    pass\n")
    with pytest.raises(native.NativeBuildError, match="could not translate .*bad.py"):
        native.build(("cxbroken.bad",), directory=tmp_path / "_native", root=tmp_path, log=lambda _line: None)
    assert not list((tmp_path / "_native").glob("*.so"))


def test_the_finder_leaves_modules_it_does_not_list_to_python() -> None:
    finder = native.Finder(("pipeline.detect.friction",))
    assert finder.find_spec("pipeline.settings", None) is None
    assert finder.find_spec("json", None) is None


BENCH = """
    import json
    from pipeline import native
    from pipeline.tools.bench_cpu import run
    import pipeline.detect.friction as friction, sinks.rows as rows
    result = run(4000, 7)
    print(json.dumps({"digest": result["digest"], "events": result["events"],
                      "compiled": [native.is_compiled(friction), native.is_compiled(rows)]}))
"""


def test_bench_cpu_digest_is_the_same_compiled_and_from_source() -> None:
    states = {s.state for s in native.status()}
    if states != {"compiled"}:
        pytest.skip(f"the hot path is not compiled here ({native.summary()}): `cxstream build-native`, "
                    "which infra/setup.sh runs")
    compiled = _python(BENCH)
    source = _python(BENCH, env={"CX_NATIVE": "0"})
    assert compiled["compiled"] == [True, True]
    assert source["compiled"] == [False, False]
    assert compiled["events"] == source["events"] > 3_000  # --events 4000: whole visitors are planned
    assert compiled["digest"] == source["digest"]
