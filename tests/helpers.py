"""Helpers shared by tests (importable: setup.cfg puts tests/ on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real test data not found at {SHARED_DATA} (../shared/data beside the project)",
)


def real_videos() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for d in ("videos", "videos_edge") for p in (SHARED_DATA / d).iterdir())
