"""Compiled copies of the hot path's modules, used only while they match their source.

``cxstream build-native`` compiles the modules in ``MODULES`` with Cython (the Python
source as it is: annotations are not used as C types, so a compiled module behaves as its
source does) into ``pipeline/_native/<module>-<hash of its source><suffix>``. On import,
``Finder`` (installed by ``pipeline/__init__.py``) hands Python the compiled copy of a
listed module only when the hash of the ``.py`` file beside it is the one in the copy's
name; any edit of the source makes the copy stale, and the source is imported instead, so
a compiled copy can never run code that is not in the tree. ``CX_NATIVE=0`` imports every
module from source.

The modules in ``EXTENSIONS`` are written in Cython with C types (``.pyx``) and have no
Python source: the same build compiles them under the same naming rule, ``load`` returns
the copy that matches the ``.pyx`` (or None), and the module that uses one does the work
the library way without it (``sinks/blocks.py``).

Measured in docs/performance.md ("Levers measured"); ``cxstream bench-cpu`` prints the same
digest either way (``tests/test_native.py``).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the directory holding pipeline/ and sinks/
DIRECTORY = Path(__file__).resolve().parent / "_native"

# The worker's pure path: decode, id check, detection, states, rows. Modules that talk to
# Kafka, Faust or ClickHouse stay in Python: their time is in the libraries they call. The
# collector's per-message modules compiled the same way were no faster (performance.md).
MODULES: tuple[str, ...] = (
    "pipeline.detect.abandonment",
    "pipeline.detect.attribution",
    "pipeline.detect.carts",
    "pipeline.detect.customer",
    "pipeline.detect.customers",
    "pipeline.detect.deadlines",
    "pipeline.detect.dedup",
    "pipeline.detect.friction",
    "pipeline.detect.friction_state",
    "pipeline.detect.ids",
    "pipeline.detect.isolation",
    "pipeline.detect.merge",
    "pipeline.detect.offers",
    "pipeline.detect.processor",
    "pipeline.detect.rules",
    "pipeline.detect.sessions",
    "pipeline.detect.stages",
    "pipeline.detect.state",
    "pipeline.detect.support",
    "pipeline.detect.tickets",
    "pipeline.detect.watermark",
    "pipeline.wire.records",
    "pipeline.wire.triggers",
    "pipeline.wire.partitioner",
    "sinks.rows",
    "sinks.chtypes",
)

# Modules written in Cython with C types, which have no Python source: ``load`` hands out
# the compiled copy of the ``.pyx`` file, and the module that calls it does the work the
# library way when there is none (``sinks/blocks.py``: clickhouse-driver's own encoding).
EXTENSIONS: tuple[str, ...] = ("sinks.blockcodec",)

SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


class NativeBuildError(Exception):
    """The compiled copies could not be built (no Cython, no C compiler, a compile error)."""


def source_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".pyx" if module in EXTENSIONS else ".py")


def source_hash(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:16]


def compiled_path(module: str, source: bytes, directory: Path = DIRECTORY) -> Path:
    return directory / f"{module}-{source_hash(source)}{SUFFIX}"


def enabled() -> bool:
    return os.environ.get("CX_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


class Finder(importlib.abc.MetaPathFinder):
    """Finds the compiled copy of a listed module when it was built from the source beside it."""

    def __init__(self, modules: tuple[str, ...] = MODULES, directory: Path = DIRECTORY) -> None:
        self.modules = frozenset(modules)
        self.directory = directory

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the importlib protocol
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        return _copy_spec(fullname, Path(spec.origin), self.directory)


def _copy_spec(module: str, source_file: Path, directory: Path):  # noqa: ANN202 - a ModuleSpec or None
    """The import spec of ``module``'s compiled copy built from ``source_file`` as it is now, or None."""
    try:
        source = source_file.read_bytes()
    except OSError:
        return None
    compiled = compiled_path(module, source, directory)
    if not compiled.is_file():
        return None  # not built, or built from another version of the source
    loader = importlib.machinery.ExtensionFileLoader(module, str(compiled))
    return importlib.util.spec_from_file_location(module, compiled, loader=loader)


def install(modules: tuple[str, ...] = MODULES, directory: Path = DIRECTORY) -> Finder | None:
    """Puts a ``Finder`` first on ``sys.meta_path`` (once); nothing when ``CX_NATIVE=0``."""
    if not enabled():
        return None
    for finder in sys.meta_path:
        if isinstance(finder, Finder):
            return finder
    finder = Finder(modules, directory)
    sys.meta_path.insert(0, finder)
    return finder


def load(module: str, directory: Path = DIRECTORY, root: Path = ROOT):  # noqa: ANN201 - a module or None
    """The compiled copy of a Cython-only module (``EXTENSIONS``), or None.

    None when ``CX_NATIVE=0``, when it was not built, or when it was built from another
    version of its ``.pyx``: the caller then does the same work without it.
    """
    if not enabled():
        return None
    if module in sys.modules:
        return sys.modules[module]
    spec = _copy_spec(module, source_path(module, root), directory)
    if spec is None:
        return None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    sys.modules[module] = loaded
    return loaded


def is_compiled(module: object) -> bool:
    """Whether an imported module is a compiled copy."""
    return str(getattr(module, "__file__", "")).endswith(SUFFIX)


@dataclass(frozen=True)
class Status:
    module: str
    state: str  # "compiled", "stale" (a copy of another source) or "missing"


def status(modules: tuple[str, ...] = MODULES + EXTENSIONS, directory: Path = DIRECTORY, root: Path = ROOT) -> list[Status]:
    out = []
    for module in modules:
        source = source_path(module, root).read_bytes()
        if compiled_path(module, source, directory).is_file():
            state = "compiled"
        elif any(directory.glob(f"{module}-*{SUFFIX}")):
            state = "stale"
        else:
            state = "missing"
        out.append(Status(module, state))
    return out


def summary() -> str:
    """One line for reports: whether compiled copies are used, and how many match their source."""
    if not enabled():
        return "off (CX_NATIVE=0): every module from source"
    states = status()
    compiled = sum(1 for s in states if s.state == "compiled")
    line = f"{compiled} of {len(states)} hot-path modules compiled"
    stale = sum(1 for s in states if s.state == "stale")
    if stale:
        line += f", {stale} stale (source changed since the build: imported from source)"
    if compiled < len(states):
        line += "; cxstream build-native compiles them"
    return line


def _compile_one(module: str, source_file: Path, target: Path, workdir: Path) -> None:
    import shutil
    import subprocess

    c_file = workdir / f"{module}.c"
    translate = [sys.executable, "-m", "cython", "-3", "--module-name", module,
                 "-X", "binding=True,annotation_typing=False", str(source_file), "-o", str(c_file)]
    done = subprocess.run(translate, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if "No module named cython" in done.stderr:
            raise NativeBuildError("Cython is not installed: pip install 'cxstream[native]'")
        raise NativeBuildError(f"Cython could not translate {source_file}: {done.stderr.strip()[-600:]}")
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise NativeBuildError("no C compiler (gcc or cc) found: apt-get install gcc")
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise NativeBuildError(f"Python's C headers are missing ({include}/Python.h): apt-get install python3-dev")
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # two builds at once never share a file
    command = [compiler, "-shared", "-fPIC", "-O2", "-fno-strict-aliasing", f"-I{include}", str(c_file), "-o", str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise NativeBuildError(f"the C compiler {compiler} cannot run: {exc}") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise NativeBuildError(f"{compiler} failed on {module}: {done.stderr.strip()[-600:]}")
    if compiled_path(module, source_file.read_bytes(), target.parent) != target:
        partial.unlink(missing_ok=True)  # the copy's name would claim a source it was not built from
        raise NativeBuildError(f"{source_file} changed during the build: run cxstream build-native again")
    partial.replace(target)  # a copy appears whole or not at all


def build(modules: tuple[str, ...] = MODULES + EXTENSIONS, directory: Path = DIRECTORY, root: Path = ROOT,
          jobs: int | None = None, log=print) -> list[Path]:  # noqa: ANN001
    """Compiles every listed module whose current source has no copy yet; removes every other copy."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    directory.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, tuple[Path, Path]] = {}
    targets = set()
    for module in modules:
        source_file = source_path(module, root)
        target = compiled_path(module, source_file.read_bytes(), directory)
        targets.add(target)
        if not target.is_file():
            wanted[module] = (source_file, target)
    for old in directory.glob(f"*{SUFFIX}"):
        if old not in targets:  # built from another source, or a module no longer listed
            old.unlink()
    if not wanted:
        log(f"native: all {len(modules)} modules already compiled ({directory})")
        return []
    log(f"native: compiling {len(wanted)} of {len(modules)} modules with Cython into {directory}")
    with tempfile.TemporaryDirectory(prefix="cx-native-") as work:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            futures = [pool.submit(_compile_one, module, source, target, Path(work))
                       for module, (source, target) in wanted.items()]
            for future in futures:
                future.result()
    return [target for _source, target in wanted.values()]


def clean(directory: Path = DIRECTORY) -> int:
    """Removes every compiled copy; returns how many there were."""
    removed = 0
    for path in directory.glob(f"*{SUFFIX}"):
        path.unlink()
        removed += 1
    return removed
