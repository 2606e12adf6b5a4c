"""Each stage writes exactly the columns it declares (STYLE: declared outputs are checked)."""

import pyarrow.parquet as pq
import pytest

from vtcurate.config import FLOW
from vtcurate.pipeline.rundir import RunDir
from vtcurate.stages import stage_classes


@pytest.mark.parametrize("name", FLOW)
def test_declared_output_columns(local_run, name):
    rd = RunDir(local_run)
    cls = stage_classes()[name]
    if name == "ingest":
        before = set(pq.read_schema(next(rd.ingest_input().glob("part-*.parquet"))).names)
    else:
        previous = FLOW[FLOW.index(name) - 1]
        before = set(pq.read_schema(rd.stage(previous).kept_parts()[0]).names)
    for part in rd.stage(name).kept_parts()[:1] + rd.stage(name).rejected_parts()[:1]:
        after = set(pq.read_schema(part).names)
        added = after - before - {"drop_reason", "drop_detail"}
        # a column an earlier stage also writes (duplicate_of: dedup's, then semantic_dedup's) is not new
        assert added == set(cls.output_columns) - before and set(cls.output_columns) <= after
        assert set(cls.score_columns) <= after


def test_stage_constructors_are_cheap_and_picklable(demo_config):
    import pickle

    from vtcurate.stages import build_stage

    for name in FLOW:
        stage = build_stage(name, demo_config)
        # cheap: nothing is loaded before setup() (langid's model is a lazily cached property)
        assert not {k for k in vars(stage) if k.startswith("_")}, f"{name} loaded state in __init__"
        clone = pickle.loads(pickle.dumps(stage))
        assert clone.config == stage.config and clone.resources == stage.resources
