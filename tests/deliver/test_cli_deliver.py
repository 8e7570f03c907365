"""``cxstream deliver`` and ``cxstream up`` refuse a wrong delivery config at once, naming it, secrets unsaid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", command],
        env={**base, "CX_DATA_DIR": str(tmp_path / "data"), "CX_PII_SALT": "test-salt", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_deliver_without_a_config_exits_2_naming_the_setting(tmp_path: Path) -> None:
    done = _run("deliver", tmp_path)
    assert done.returncode == 2
    assert "CX_DELIVERY_CONFIG: name the TOML or JSON file of webhook destinations" in done.stderr


def test_deliver_with_an_unknown_kind_exits_2_naming_file_destination_and_key(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.toml"
    hooks.write_text('[[destination]]\nname = "esp"\nurl = "https://h.example/x"\nsecret = "very-secret-value-1"\nkinds = ["cart"]\n')
    done = _run("deliver", tmp_path, CX_DELIVERY_CONFIG=str(hooks))
    assert done.returncode == 2
    assert f"{hooks}: destination 'esp': kinds: unknown 'cart'" in done.stderr
    assert "very-secret-value-1" not in done.stderr + done.stdout


def test_up_with_delivery_on_and_a_missing_secret_variable_starts_nothing(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.toml"
    hooks.write_text('[[destination]]\nname = "esp"\nurl = "https://h.example/x"\nsecret_env = "CX_TEST_NO_SUCH_SECRET"\n')
    done = _run("up", tmp_path, CX_DELIVERY_ENABLED="true", CX_DELIVERY_CONFIG=str(hooks))
    assert done.returncode == 2
    assert "cxstream up: " in done.stderr and "CX_TEST_NO_SUCH_SECRET is not set or empty" in done.stderr
    assert not (tmp_path / "data" / "up.lock").exists()  # nothing was started
