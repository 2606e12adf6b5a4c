import json
import subprocess
import sys

from helpers import CONFIGS
from vtcurate.cli import main
from vtcurate.config import FLOW

HEAVY = ("torch", "ray", "pyarrow", "av", "decord", "cv2", "webdataset", "open_clip", "apache_beam")


def test_help_imports_nothing_heavy():
    code = (
        "import sys, vtcurate.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "run" in out.stdout and "demo-data" in out.stdout


def test_stats_json_contract(local_run, capsys):
    assert main(["stats", str(local_run), "--json"]) == 0
    funnel = json.loads(capsys.readouterr().out)
    assert [f["stage"] for f in funnel] == list(FLOW)
    keys = {"stage", "rows_in", "kept", "rejected", "rejected_by_reason"}
    assert all(set(f) == keys | ({"videos_in"} if f["stage"] == "split" else set()) for f in funnel)
    split = next(f for f in funnel if f["stage"] == "split")  # rows in: videos; kept: clips
    assert split["videos_in"] == split["rows_in"] == funnel[0]["kept"] < split["kept"]
    assert funnel[0]["rejected_by_reason"]["missing_file"] == 1
    assert main(["stats", str(local_run)]) == 0
    table = capsys.readouterr().out
    assert "lang_not_allowed: 3" in table and "keyframes" in table


def test_stages_lists_config_keys(capsys):
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert "keyframes.num_frames = 8" in out and "clip_filter.aggregate" in out


def test_report_command(local_run, tmp_path, capsys):
    assert main(["report", str(local_run)]) == 0
    assert capsys.readouterr().out.strip().endswith("report/index.html")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_inspect(local_run, capsys, tmp_path):
    tar = next((local_run / "shards" / "train").glob("*.tar"))
    assert main(["inspect", str(tar), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "8 frames" in out
    (tmp_path / "x.tar").write_text("not a tar")
    assert main(["inspect", str(tmp_path / "x.tar")]) == 2
    assert "not a readable tar shard" in capsys.readouterr().err


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, demo_corpus):
    manifest = str(demo_corpus / "manifest.jsonl")
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            manifest,
            "--run-dir",
            str(tmp_path),
            "--set",
            "keyframes.nm_frames=4",
        ]
    )
    assert code == 2 and "unknown key 'keyframes.nm_frames'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            str(bad),
            "--run-dir",
            str(tmp_path / "r"),
            "--runner",
            "local",
        ]
    )
    assert code == 2 and "missing required column(s) ['caption']" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("stages/*/kept/*"))


def test_demo_data_and_run_end_to_end(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--clips", "4"]) == 0
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            str(tmp_path / "d" / "manifest.jsonl"),
            "--run-dir",
            str(tmp_path / "r"),
            "--runner",
            "local",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "samples in" in out and "ingest" in out
