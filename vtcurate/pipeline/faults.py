"""Fault injection (config `faults`): make a chosen partition's worker raise, die or hold, once.

Each fault fires at most once per run directory: the process that fires it first creates a
marker under RUN_DIR/_faults, so the retry (Ray re-running the task, or the rerun of a killed
command) goes through.  A fault fires just before the file that marks its partition done is
written, so the partition's other outputs are already on disk, as after a real crash.

`hold` writes the cluster node running the partition into its marker and waits until
RUN_DIR/_faults/release exists: a test then knows which partitions are in flight, and where,
before it kills a node, instead of hoping the machine is slow enough to catch one mid-way.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from vtcurate.config import FaultSpec

MARKERS = "_faults"
RELEASE = "release"  # RUN_DIR/_faults/release ends every `hold`
HOLD_LIMIT_S = 600.0  # a hold nobody releases gives up, so a broken test cannot hang a worker forever


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


def fire(fault: dict | None, node: str | None = None) -> None:
    if not fault:
        return
    marker = Path(fault["marker"])
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # fired before: this is the retry
    with os.fdopen(fd, "w") as f:
        f.write(node or "")
    if fault["action"] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault["action"] == "hold":
        release, deadline = marker.parent / RELEASE, time.monotonic() + HOLD_LIMIT_S
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    raise InjectedFault(f"injected fault ({marker.name})")
