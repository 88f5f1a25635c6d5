"""The report page, built from real runs (`det_runs`: one run uninterrupted and
one stopped and resumed, both fitted on tokens) and rendered by Debian's
chromium through playwright: every section is there, no console error, no
request leaves the page, every figure decodes, and a screenshot is kept.
Bad input (a folder without metrics, runs on different axes, an unwritable
output path) is one line each."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from rl.cli import main
from rl.report import write_report
from rl.report.page import SECTION_IDS

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# what this machine needs to run chromium headless (as root, no GPU, no network)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def render(page_path: Path, screenshot: Path) -> dict:
    """Open the page in headless chromium; return what the page showed and said."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (make setup installs Debian's chromium)")
    seen = {"console_errors": [], "requests": []}
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                   viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
            page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            seen["sections"] = page.eval_on_selector_all(
                "section", "els => els.map(e => [e.id, e.querySelector('h2').textContent, e.offsetHeight])")
            seen["images"] = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.naturalWidth])")
            seen["charts"] = page.eval_on_selector_all(
                "svg", "els => els.map(e => [e.getAttribute('aria-label'), e.getBoundingClientRect().width, "
                       "e.querySelectorAll('polyline').length])")
            seen["scripts"] = page.eval_on_selector_all("script", "els => els.length")
            seen["compare_rows"] = page.eval_on_selector_all("#compare tbody tr", "els => els.length")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            ctx.close()
    return seen


def test_report_of_real_runs_renders_in_chromium(det_runs, tmp_path):
    out = write_report([det_runs.whole, det_runs.resumed], tmp_path / "report.html")
    seen = render(out, tmp_path / "report.png")
    assert seen["console_errors"] == []
    # offline: the only request is the page itself (figures are data URIs, no script, no stylesheet link)
    page_url = out.resolve().as_uri()
    assert seen["requests"][0] == page_url and seen["scripts"] == 0
    assert all(u == page_url or u.startswith("data:") for u in seen["requests"]), seen["requests"]
    ids = [s[0] for s in seen["sections"]]
    assert ids == list(SECTION_IDS)
    assert all(title and height > 60 for _, title, height in seen["sections"])
    # the fit's PNGs (curves, backtests, comparison) decode; the per-step SVG panels draw lines
    assert len(seen["images"]) >= 3 and all(width > 100 for _, width in seen["images"]), seen["images"]
    assert len(seen["charts"]) >= 12, seen["charts"]
    assert all(width > 200 and lines >= 2 for _, width, lines in seen["charts"]), seen["charts"]
    assert seen["compare_rows"] == 2  # both runs at equal compute
    shot = tmp_path / "report.png"
    assert shot.stat().st_size > 100_000
    text = out.read_text()
    for label in ("whole", "resumed"):
        assert f"<td class=\"l\">{label}</td>" in text
    assert "compute/tokens" in text and "not recorded" in text  # the hub counters no run logs yet


def test_a_finished_runs_own_page_says_finished(det_runs):
    # the controller rebuilds report.html after the last evaluation, a moment before it
    # writes summary.json: the page it leaves behind is that of a finished run
    page = (det_runs.whole / "report.html").read_text()
    assert "finished (6 steps)" in page and "running: step" not in page


def test_report_cli_writes_into_the_run_dir_and_refuses_bad_input(det_runs, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(det_runs.whole, run, ignore=shutil.ignore_patterns("checkpoints"))
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file() and capsys.readouterr().out == f"report: {run / 'report.html'}\n"

    def one_line(argv) -> str:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("asymptote: error: "), err
        return err

    assert "not a run directory (no metrics.jsonl)" in one_line(["report", str(tmp_path)])
    err = one_line(["report", str(finished_run), str(run)])
    assert "different x axes" in err and "compute/device_hours" in err and "compute/tokens" in err
    (tmp_path / "file").write_text("")
    assert "cannot write the report" in one_line(["report", str(run), "-o", str(tmp_path / "file" / "r.html")])
