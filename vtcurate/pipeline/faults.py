"""Fault injection (config `faults`): make a chosen partition's worker raise or die, once.

Each fault fires at most once per run directory: the process that fires it first creates a
marker under RUN_DIR/_faults, so the retry (Ray re-running the task, or the rerun of a killed
command) goes through.  A fault fires just before the file that marks its partition done is
written, so the partition's other outputs are already on disk, as after a real crash.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from vtcurate.config import FaultSpec

MARKERS = "_faults"


class InjectedFault(RuntimeError):
    """Raised by a `raise` fault: a transient error the runner is expected to retry."""


def arm(faults: list[FaultSpec], stage: str, run_root: Path, part: str) -> dict | None:
    """The fault (action + marker path) for this stage's partition `part` (part-NNNNN), or None."""
    partition = int(part.rsplit("-", 1)[1])
    for spec in faults:
        if spec.stage == stage and spec.partition == partition:
            name = f"{stage}-{partition}-{spec.action}"
            return {"action": spec.action, "marker": str(run_root / MARKERS / name)}
    return None


def fire(fault: dict | None) -> None:
    if not fault:
        return
    marker = Path(fault["marker"])
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return  # fired before: this is the retry
    if fault["action"] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault ({marker.name})")
