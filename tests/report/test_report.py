"""The audit report: report.json agrees with stats.json; the HTML is inert and correct in a browser."""

import json
import re
import shutil
from pathlib import Path

import pytest

from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.report.collect import collect
from vtcurate.report.render import render_html, write_report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def report(local_run):
    write_report(local_run)  # also written by the run; rewritten here to test the command path
    return json.loads((local_run / "report" / "report.json").read_text())


def test_report_json_matches_stage_stats(report, local_run):
    stats = load_stats(local_run)
    assert [f["stage"] for f in report["funnel"]] == [s["stage"] for s in stats]
    for f, s in zip(report["funnel"], stats):
        assert (f["rows_in"], f["kept"], f["rejected"]) == (s["rows_in"], s["kept"], s["rejected"])
        assert f["rejected_by_reason"] == s["rejected_by_reason"]
        groups = {g["reason"]: g for g in report["rejections"][f["stage"]]}
        assert {r: g["count"] for r, g in groups.items()} == s["rejected_by_reason"]
        for g in groups.values():
            assert 0 < len(g["examples"]) <= min(3, g["count"])
            assert all(ex["reason"] == g["reason"] and ex["detail"] for ex in g["examples"])
    assert [t["seconds"] for t in report["timing"]] == [s["seconds"] for s in stats]


def test_report_shards_and_distributions(report, local_run):
    index = json.loads((RunDir(local_run).shards / "index.json").read_text())
    assert report["shards"]["samples"] == index["samples"] == report["funnel"][-1]["kept"]
    assert report["shards"]["count"] == len(index["shards"])
    assert sum(report["shards"]["languages"].values()) == index["samples"]
    ingest = report["funnel"][0]
    dur = report["distributions"]["duration"]["series"]
    # the histogram counts every probed row (unprobed rejects have no duration)
    assert dur["kept"]["n"] == ingest["kept"]
    lang = report["distributions"]["lang_score"]
    langid = next(f for f in report["funnel"] if f["stage"] == "langid")
    assert sum(h["n"] for h in lang["series"].values()) == langid["rows_in"]
    split = next(f for f in report["funnel"] if f["stage"] == "split")  # videos in, clips out
    assert split["videos_in"] == split["rows_in"] == ingest["kept"] and split["kept"] == langid["rows_in"]
    assert split["videos_split"] + split["videos_rejected"] == split["videos_in"] < split["clips_out"]
    assert lang["thresholds"] == {"en": 0.3, "zh": 0.5}


def test_answer_key_decisions(report):
    key = report["answer_key"]
    assert key["summary"] == {"caught": 16, "kept_as_expected": 6, "not_enforced": 2}
    assert key["clean_wrongly_dropped"] == []
    html_case = next(c for c in key["cases"] if c["id"] == "planted-html")
    assert html_case["status"] == "kept_as_expected"
    long = [c for c in key["cases"] if c["id"].startswith("long")]
    assert [(c["got_clips"], c["expect_clips"], c["status"]) for c in long] == [
        (3, 3, "kept_as_expected")
    ] * 2


def test_a_wrong_split_fails_the_answer_key(local_run, tmp_path):
    from vtcurate.report.answer_key import WRONG, evaluate_answer_key

    cases = [json.loads(line) for line in Path(json.loads((local_run / "report" / "report.json").read_text())
             ["answer_key"]["file"]).read_text().splitlines()]  # fmt: skip
    for c in cases:
        if c["id"] == "long0":
            c["expect_clips"] = 4  # the key wants a cut the detector did not find
    path = tmp_path / "key.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    stages = [s["stage"] for s in load_stats(local_run)]
    got = {c["id"]: c["status"] for c in evaluate_answer_key(RunDir(local_run), path, stages)["cases"]}
    assert got["long0"] == "wrong_split" in WRONG and got["long1"] == "kept_as_expected"


def test_text_read_wrong_fails_the_answer_key(local_run, tmp_path):
    from vtcurate.report.answer_key import WRONG, evaluate_answer_key

    cases = [json.loads(line) for line in Path(json.loads((local_run / "report" / "report.json").read_text())
             ["answer_key"]["file"]).read_text().splitlines()]  # fmt: skip
    for c in cases:
        if c["id"] == "planted-watermark":
            c["expect_text"] = "www.stockclip.example"  # what a misreading OCR would have to match
    path = tmp_path / "key.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    stages = [s["stage"] for s in load_stats(local_run)]
    got = {c["id"]: c for c in evaluate_answer_key(RunDir(local_run), path, stages)["cases"]}
    assert got["planted-watermark"]["status"] == "wrong_text" in WRONG
    assert got["planted-watermark"]["got_text"] == "www.stockclips.example"
    assert got["planted-subtitles"]["status"] == "caught"  # its own text, spaces and case aside


def _image(uri: str):
    import base64

    import cv2
    import numpy as np

    data = base64.b64decode(uri.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def test_motion_and_text_in_the_report(report):
    """Score histograms with their thresholds, and the dropped clips' key-frames with the text
    boxes drawn (a larger thumbnail)."""
    dists = report["distributions"]
    assert dists["motion_score"]["thresholds"] == {"min_motion": 0.005}
    assert dists["blank_fraction"]["thresholds"] == {"max_blank_fraction": 0.5}
    assert dists["text_area"]["thresholds"] == {"cut-off": 0.01}
    assert sum(h["n"] for h in dists["text_area"]["series"].values()) == next(
        f["rows_in"] for f in report["funnel"] if f["stage"] == "text_overlay")  # fmt: skip
    (text,) = report["rejections"]["text_overlay"]
    assert text["reason"] == "text_overlay" and len(text["examples"]) == 2
    for ex in text["examples"]:
        assert ex["thumb_width"] == 192 and ex["scores"]["ocr_text"] and len(ex["thumbnails"]) == 1
        img = _image(ex["thumbnails"][0])
        red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)
        assert min(img.shape[:2]) == 192 and red.mean() > 0.005  # the boxes, drawn in red
    reasons = {g["reason"]: g for g in report["rejections"]["motion"]}
    assert set(reasons) == {"static", "blank"}
    assert all(ex["thumb_width"] == 96 for g in reasons.values() for ex in g["examples"])


def test_captions_are_escaped(local_run):
    html = (local_run / "report" / "index.html").read_text()
    assert "<script" not in html.lower()  # the page has no script at all, planted or ours
    assert "&lt;script&gt;window.vtcuratePwned = 1&lt;/script&gt;" in html
    assert "onerror=" not in html.replace("onerror=&#34;", "").replace("onerror=&quot;", "")
    assert re.search(r"""(src|href)=["']?(https?:)?//""", html) is None  # nothing fetched from a network


def test_random_weights_banner(report, local_run, tmp_path):
    # the demo's CLIP (clip_filter, and aux_caption's retrieval) is randomly initialised
    names = report["provenance"]["random_weights"]
    assert any(n.startswith("clip_filter.") for n in names)
    assert any(n.startswith("aux_caption") for n in names)
    assert 'id="random-weights"' in (local_run / "report" / "index.html").read_text()

    def trained(node):
        if isinstance(node, dict):
            return {k: False if k == "random_weights" else trained(v) for k, v in node.items()}
        return [trained(v) for v in node] if isinstance(node, list) else node

    run = tmp_path / "run"
    shutil.copytree(local_run, run)
    info = json.loads((run / "run.json").read_text())
    info["stages"] = trained(info["stages"])
    (run / "run.json").write_text(json.dumps(info))
    real = collect(run)
    assert real["provenance"]["random_weights"] == []
    assert 'id="random-weights"' not in render_html(real)


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian chromium + chromium-driver (make test installs them; apt failed or not root)",
)
def test_report_in_headless_chromium(report, local_run):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1600"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get((local_run / "report" / "index.html").resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        assert driver.execute_script("return window.vtcuratePwned === undefined") is True
        assert "<script>window.vtcuratePwned = 1</script>" in driver.find_element(By.TAG_NAME, "body").text
        for s in load_stats(local_run):
            row = driver.find_element(By.CSS_SELECTOR, f'#funnel-table tr[data-stage="{s["stage"]}"]')
            shown = {f: int(row.find_element(By.CSS_SELECTOR, f'td[data-field="{f}"]').text)
                     for f in ("rows_in", "kept", "rejected")}  # fmt: skip
            assert shown == {f: s[f] for f in ("rows_in", "kept", "rejected")}
            for reason, count in s["rejected_by_reason"].items():
                cell = row.find_element(By.CSS_SELECTOR, f'span[data-reason="{reason}"]')
                assert int(cell.text) == count
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert images and all(ok and width > 0 for ok, width in images)
        shot = local_run / "report" / "screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_a_what_if_table_per_score_threshold(report, local_run):
    """The table of each threshold: at the run's own value it shows what the run kept and its
    answer key; other values are computed from the stored scores."""
    config = json.loads((local_run / "run.json").read_text())["config"]
    tables = {t["key"]: t["rows"] for t in report["whatif"]}
    langs = sorted(config["clip_filter"]["thresholds"])
    assert {f"clip_filter.thresholds.{lang}.value" for lang in langs} <= set(tables)
    assert {"text_overlay.threshold.value", "motion.min_motion"} <= set(tables)
    kept = report["funnel"][-1]["kept"]
    caught = report["answer_key"]["summary"].get("caught", 0)
    for key, rows in tables.items():
        stage, *path = key.split(".")
        own = config[stage]
        for part in path:
            own = own[part]
        (at_own,) = [r for r in rows if r["value"] == own]
        assert (at_own["kept"], at_own["unscored"], at_own["planted_caught"]) == (kept, 0, caught), key
        assert len(rows) >= 3


def test_filter_quality_agrees_with_the_answer_key(report, local_run):
    """Each enforced stage's expected rejections are the answer key's cases caught there (by any
    reason); clip_filter (random weights) is judged on what it would have dropped."""
    fq = report["filter_quality"]
    cases = report["answer_key"]["cases"]
    for stage, q in fq["stages"].items():
        if q["enforced"]:
            hit = [c for c in cases if c["expect_stage"] == stage and c["got_stage"] == stage]
            assert q["rejected_expected"] == len(hit), stage
    assert fq["stages"]["motion"]["recall"] == fq["stages"]["motion"]["precision"] == 1.0
    assert fq["stages"]["clip_filter"]["enforced"] is False
    assert set(fq["stages"]["clip_filter"]["auc"]) == {"clip_score"}
    html = (local_run / "report" / "index.html").read_text()
    assert 'id="filter-quality-stages"' in html and 'id="filter-quality-kinds"' in html
