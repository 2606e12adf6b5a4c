"""ingest: probe each manifest row's video; reject rows that cannot become a clip."""

from __future__ import annotations

import pyarrow as pa

from vtcurate.config import IngestConfig
from vtcurate.stages.base import (
    DROP_DETAIL,
    DROP_REASON,
    Resources,
    Stage,
    column,
    reopen,
    set_column,
    with_decisions,
)
from vtcurate.video.probe import probe
from vtcurate.video.source import VideoSourceError

# how far a declared end may run past the probed duration before the span counts as bad
SPAN_TOLERANCE_S = 0.5

PROBE_FIELDS = {
    "duration": pa.float64(),
    "fps": pa.float64(),
    "width": pa.int64(),
    "height": pa.int64(),
    "codec": pa.string(),
    "container": pa.string(),
    "num_frames": pa.int64(),
    "probe_backend": pa.string(),
}


class IngestStage(Stage):
    name = "ingest"
    output_columns = (*PROBE_FIELDS, "span_start", "span_end")
    score_columns = ("duration", "fps", "width", "height")
    reads_manifest = True
    decision_reasons = ("too_short", "too_long")

    config: IngestConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=16)

    def _span(self, row: dict, duration: float) -> tuple[float, float, str | None, str | None]:
        start = row.get("start")
        end = row.get("end")
        start = 0.0 if start is None else float(start)
        end = duration if end is None else float(end)
        if start < 0 or end <= start:
            return start, end, "bad_span", f"span [{start}, {end}) is empty or negative"
        if start >= duration or end > duration + SPAN_TOLERANCE_S:
            return start, end, "bad_span", f"span [{start}, {end}) exceeds the {duration:.3f}s video"
        end = min(end, duration)
        return start, end, *self._limits(end - start)

    def _limits(self, length: float) -> tuple[str | None, str | None]:
        if length < self.config.min_duration:
            return "too_short", f"{length:.3f}s < min_duration {self.config.min_duration}s"
        if length > self.config.max_duration:
            return "too_long", f"{length:.3f}s > max_duration {self.config.max_duration}s"
        return None, None

    def redecide(self, table: pa.Table) -> pa.Table:
        table = reopen(table, self.decision_reasons)
        reasons, details = column(table, DROP_REASON), column(table, DROP_DETAIL)
        for i, (start, end) in enumerate(zip(column(table, "span_start"), column(table, "span_end"))):
            if reasons[i] is None and start is not None:
                reasons[i], details[i] = self._limits(end - start)
        return with_decisions(table, reasons, details)

    def _row(self, row: dict) -> tuple[dict, str | None, str | None]:
        out: dict = dict.fromkeys(self.output_columns)
        if row.get("manifest_error"):
            return out, row["manifest_error"], row.get("manifest_detail")
        timed_text = row.get("subtitles") or row.get("segments")  # split gives its clips captions
        if not (row.get("caption") or "").strip() and not timed_text:
            return out, "empty_caption", "caption is empty or whitespace, and the row has no timed text"
        try:
            result = probe(row["video"], self.config.probe_backends, self.config.max_pixels)
        except VideoSourceError as err:
            return out, err.code, err.detail
        out.update(result.as_row())
        start, end, reason, detail = self._span(row, result.duration)
        out["span_start"], out["span_end"] = start, end
        return out, reason, detail

    def __call__(self, batch: pa.Table) -> pa.Table:
        results = [self._row(row) for row in batch.to_pylist()]
        types = {**PROBE_FIELDS, "span_start": pa.float64(), "span_end": pa.float64()}
        for col in self.output_columns:
            batch = set_column(batch, col, [r[0][col] for r in results], types[col])
        return with_decisions(batch, [r[1] for r in results], [r[2] for r in results])
