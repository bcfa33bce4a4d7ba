"""The import-linter contracts in pyproject.toml hold, and each kind of boundary bites: a
copy of the code with one forbidden import added fails ``lint-imports`` on that contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("vidpipe", "vidpipe_ml", "services", "vidpipe_cli", "infra")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The source packages and pyproject.toml, copied (only ``.py`` files matter)."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_lint_imports_when_code_as_committed_then_every_contract_kept(copy: Path) -> None:
    done = _lint(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "added_import", "broken"),
    [
        ("services/detector/filters.py", "import services.renderer.draw", "Services are peers"),
        ("services/agent/decoders.py", "import services.decoder.settings", "Services are peers"),
        ("vidpipe/keys.py", "import vidpipe_ml.coco", "Contracts and stores (vidpipe)"),
        ("vidpipe_ml/coco.py", "import services.accuracy.service", "Layers"),
        ("vidpipe/decoding/source.py", "import infra.local.media", "Runtime code never imports"),
    ],
)
def test_lint_imports_when_boundary_crossed_then_that_contract_broken(
    copy: Path, module: str, added_import: str, broken: str
) -> None:
    path = copy / module
    path.write_text(path.read_text() + f"\n{added_import}  # crossing a boundary\n")

    done = _lint(copy)

    assert done.returncode != 0
    # "<contract> BROKEN", or "<contract> BROKEN (n ignored imports)"
    broken_lines = [line for line in done.stdout.splitlines() if "BROKEN" in line.split()]
    assert any(line.startswith(broken) for line in broken_lines), done.stdout


def test_services_contract_when_read_then_names_every_service_package() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [peers] = [c for c in contracts["contracts"] if c["type"] == "independence"]
    packages = {
        f"services.{p.name}" for p in (REPO / "services").iterdir() if (p / "__init__.py").is_file()
    }
    assert set(peers["modules"]) == packages
