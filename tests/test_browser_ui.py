"""A person's view: MLflow's UI (``qrec ui``) and the batch runner's HTML report in a real browser.

Debian's Chromium, headless (/usr/bin/chromium; never a downloaded browser): driven by
Playwright (the Python package) for the UI tests, run directly on the command line for the
report's laptop-screen check. Screenshots are saved in the test's output folder (tmp_path) and,
when QRECORDER_TEST_OUTPUT is set, copied there too (CI keeps them). Only a missing external
tool (Chromium, Playwright) skips a test; qrecorder's own modules are imported normally.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def _save(page: object, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / "screenshots" / name
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    keep = os.environ.get("QRECORDER_TEST_OUTPUT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / name)
    return shot


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"qrec ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def test_qrec_ui_shows_runs_params_metrics(R, sqlite_uri: str, tmp_path: Path, browser) -> None:  # noqa: N803
    from qrecorder.server import free_port

    run_ids = {}
    for i, (lr, ic) in enumerate(((0.05, 0.0123), (0.1, 0.0456))):
        with R.start(experiment_name="ui_check", recorder_name=f"qrec_run_{i}"):
            R.log_params(learning_rate=lr, model_kind="LinearProbe")
            R.log_metrics(ic_score=ic)
            R.log_metrics(step=1, ic_score=ic)
            run_ids[f"qrec_run_{i}"] = R.get_recorder().id
    exp_id = R.get_exp(experiment_name="ui_check", create=False).id

    port = free_port()
    qrec = str(Path(sys.executable).with_name("qrec"))
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([qrec, "ui", "--uri", sqlite_uri, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/health", proc)
        page = browser.new_page()
        try:
            page.goto(f"{base}/#/experiments/{exp_id}/runs", wait_until="load")
            for name in run_ids:
                page.get_by_text(name).first.wait_for(timeout=60_000)
            _save(page, tmp_path, "ui_experiment.png")

            rid = run_ids["qrec_run_1"]
            page.goto(f"{base}/#/experiments/{exp_id}/runs/{rid}", wait_until="load")
            for text in ("learning_rate", "LinearProbe", "ic_score"):
                page.get_by_text(text).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "0.1" in body and "0.0456" in body, body[:2000]
            _save(page, tmp_path, "ui_run.png")
        except Exception:
            _save(page, tmp_path, "ui_failure.png")
            raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_batch_report_html(R, tmp_path: Path, browser) -> None:  # noqa: N803
    from qrecorder.runner import summary as summary_mod
    from qrecorder.runner.results import TABLE_METRICS

    for model, base in (("Linear", 0.02), ("LightGBM", 0.05)):
        for seed in range(3):
            with R.start(experiment_name="report_check", recorder_name=f"{model}-{seed}"):
                R.set_tags(**{"qrecorder.model": model, "qrecorder.seed": str(seed), "qrecorder.dataset": "synthetic"})
                R.log_metrics(**{metric: base + 0.001 * seed + 0.0001 * k for k, (_, metric) in enumerate(TABLE_METRICS)})
    summary, paths = summary_mod.compare_experiments(["report_check"], out_dir=tmp_path / "report")
    report = paths["report.html"]
    assert report.exists()

    page = browser.new_page()
    page.goto(report.as_uri(), wait_until="load")
    body = page.inner_text("body")
    for text in ("Linear", "LightGBM", "Model Name", TABLE_METRICS[0][0]):
        assert text in body, body[:2000]
    assert page.locator("table").count() >= 1
    images = page.locator("img")
    if images.count():
        assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    _save(page, tmp_path, "batch_report.png")


LAPTOP = (1366, 900)
CLI_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--window-size={LAPTOP[0]},{LAPTOP[1]}"]
MEASURE = """<script>
(function () {
  var imgs = Array.from(document.images);
  var out = {scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
             mainWidth: document.querySelector('main').getBoundingClientRect().width,
             images: imgs.map(function (i) { return {complete: i.complete, natural: i.naturalWidth,
                                                      shown: i.getBoundingClientRect().width}; })};
  document.body.setAttribute('data-measure', JSON.stringify(out));
})();
</script>"""


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CLI_FLAGS, f"--user-data-dir={tmp_path / 'chromium-cli'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_fits_a_laptop_screen(R, tmp_path: Path) -> None:  # noqa: N803
    """report.html with every chart, at 1366x900 in headless Chromium: no horizontal scrolling."""
    import json
    import re

    from PIL import Image, ImageStat
    from test_report import make_runs

    from qrecorder.runner.summary import compare_experiments

    make_runs(R, seeds=3, days=250)
    _, paths = compare_experiments(["report_check"], baseline="Linear", out_dir=tmp_path / "report",
                                   ui_url="http://127.0.0.1:5000")
    report = paths["report.html"]

    shot = tmp_path / "screenshots" / "report_laptop.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    res = _chromium([f"--screenshot={shot}", report.as_uri()], tmp_path)
    assert shot.exists(), res.stderr[-2000:]
    img = Image.open(shot).convert("L")
    assert img.size == LAPTOP
    assert ImageStat.Stat(img).stddev[0] > 10  # something is drawn, not a blank page
    keep = os.environ.get("QRECORDER_TEST_OUTPUT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)

    # the same page plus a measuring script; --dump-dom prints the DOM after load
    probe = report.with_name("measure.html")
    probe.write_text(report.read_text().replace("</body>", MEASURE + "</body>"))
    res = _chromium(["--dump-dom", probe.as_uri()], tmp_path)
    found = re.search(r'data-measure="([^"]*)"', res.stdout)
    assert found, res.stderr[-2000:]
    m = json.loads(found.group(1).replace("&quot;", '"'))
    assert m["scrollWidth"] <= m["clientWidth"] <= LAPTOP[0], m  # no horizontal scroll bar
    assert m["mainWidth"] <= 1200, m
    assert len(m["images"]) == 3 and all(i["complete"] and i["natural"] > 0 for i in m["images"]), m
    assert all(i["natural"] <= 1200 and i["shown"] <= 1200 for i in m["images"]), m
