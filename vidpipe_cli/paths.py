"""Where the local installation keeps its state: ``var/`` next to the checkout."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / "var"
ASSETS_DIR = STATE_DIR / "assets"
CENTERNET_DIR = ASSETS_DIR / "centernet"
