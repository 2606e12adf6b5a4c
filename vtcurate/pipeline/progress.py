"""Stage progress: a tqdm bar on a terminal, periodic log lines elsewhere (CI, cluster logs)."""

from __future__ import annotations

import logging
import sys
import time

from vtcurate.pipeline.partition import PartitionResult

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, stage: str, total: int, done: int = 0, log_every_s: float = 30.0) -> None:
        self.stage, self.total, self.done = stage, total, done
        self.rows = self.kept = 0
        self.t0 = self._last_log = time.perf_counter()
        self.log_every_s = log_every_s
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc=stage, unit="part", leave=False)
        elif done:
            log.info("%s: resuming, %d of %d partitions already done", stage, done, total)

    def update(self, results: list[PartitionResult]) -> None:
        """One partition through the segment: its op results in order."""
        self.done += 1
        ran = [r for r in results if not r.resumed]
        if ran:
            self.rows += ran[0].rows_in
            self.kept += ran[-1].kept
        rate = self.rows / max(time.perf_counter() - self.t0, 1e-9)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(kept=f"{self.kept}/{self.rows}", rows_s=f"{rate:.1f}")
        elif time.perf_counter() - self._last_log >= self.log_every_s or self.done == self.total:
            self._last_log = time.perf_counter()
            log.info(
                "%s: %d/%d partitions, %d/%d rows kept, %.1f rows/s",
                self.stage, self.done, self.total, self.kept, self.rows, rate,
            )  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
