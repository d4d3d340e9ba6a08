"""`suite board` checked like a user would: start it on a log directory holding a tiny real run, then open it
in headless Chromium and see the run's scalars and HParams; screenshots go to artifacts/ (git-ignored).

The browser test needs Chromium (Debian: `apt-get install chromium`; or set CHROMIUM=/path/to/chrome) and skips
without it. With Playwright installed (pip install playwright; it drives the system Chromium, no browser
download) it reads the rendered page, shadow DOM included; without it, it uses Chromium's own --dump-dom and
--screenshot and checks HParams through TensorBoard's HTTP API.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

ARTIFACTS = ROOT / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, data=None, timeout=30):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A tiny real run in a fresh log directory and `python -m suite board` serving it: (url, run name, proc)."""
    from suite import config, runner

    logdir = tmp_path_factory.mktemp("logs")
    cfg = config.resolve("lenet5", ["train.verbose=0", "data.limit=256", "data.crop=2"],
                         {"log.dir": str(logdir), "train.epochs": 2})
    run_dir = pathlib.Path(runner.run(cfg, echo=lambda *a: None)["run_dir"])
    run = f"lenet5/{run_dir.name}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "suite", "board", "--logdir", str(logdir),
                             "--port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    url, lines, t0 = None, [], time.time()
    while url is None and time.time() - t0 < 180:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "http://" in line:
            url = line[line.index("http://"):].split()[0]
    if url is None:
        proc.kill()
        pytest.fail(f"suite board printed no URL: {''.join(lines)} {proc.stderr.read()[-2000:]}")
    assert url.startswith("http://127.0.0.1:"), url  # local only by default
    for _ in range(120):  # the run directories are loaded in the background
        if f"{run}/train" in get(url + "data/runs") and run in get(url + "data/runs"):
            break
        time.sleep(0.5)
    yield url, run, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_board_serves_scalars_images_graph_and_hparams(board):
    url, run, _ = board
    runs = get(url + "data/runs")
    assert {run, f"{run}/train", f"{run}/validation"} <= set(runs), runs
    plugins = {k for k, v in get(url + "data/plugins_listing").items() if v["enabled"]}
    assert {"scalars", "images", "graphs", "hparams", "text"} <= plugins, plugins

    scalars = get(url + "data/plugin/scalars/tags")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(scalars[f"{run}/train"])
    assert {"epoch_loss", "epoch_accuracy"} <= set(scalars[f"{run}/validation"])
    images = get(url + "data/plugin/images/tags")[run]
    assert {"augmented_training_images", "test_confusion_matrix"} <= set(images), images
    graphs = get(url + "data/plugin/graphs/info")[f"{run}/train"]
    assert graphs["run_graph"] and graphs["tags"]["keras"]["conceptual_graph"]

    exp = get(url + "data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in exp["hparamInfos"]}
    assert {"model.name", "train.lr", "data.crop", "train.epochs"} <= names, names
    metrics = {m["name"]["tag"] for m in exp["metricInfos"]}
    assert {"test_accuracy", "best_val_accuracy", "epoch_accuracy"} <= metrics, metrics


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


def _page_text(page):
    """All the text on the page, inside shadow roots too (TensorBoard's Polymer dashboards use them)."""
    return page.evaluate("""() => {
        const out = [];
        const walk = (n) => {
            if (n.shadowRoot) walk(n.shadowRoot);
            for (const c of n.childNodes) {
                if (c.nodeType === Node.TEXT_NODE) out.push(c.textContent);
                else walk(c);
            }
        };
        walk(document.body);
        return out.join(' ').replace(/\\s+/g, ' ');
    }""")


def _wait_for_text(page, needles, timeout_s=60):
    t0, text = time.time(), ""
    while time.time() - t0 < timeout_s:
        text = _page_text(page)
        if all(n in text for n in needles):
            return text
        page.wait_for_timeout(500)
    missing = [n for n in needles if n not in text]
    raise AssertionError(f"not on the page after {timeout_s} s: {missing}; page text: {text[:1500]}")


def test_board_in_headless_chromium(board):
    exe = chromium()
    if exe is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")
    url, run, _ = board
    ARTIFACTS.mkdir(exist_ok=True)
    sync_playwright = None if os.environ.get("SUITE_BROWSER") == "cli" else _playwright()
    if sync_playwright is None:
        return _check_with_chromium_cli(exe, url, run)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS[1:])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url + "#timeseries")
            text = _wait_for_text(page, [run, "epoch_accuracy", "epoch_loss", "augmented_training_images"])
            assert "test_confusion_matrix" in text
            page.wait_for_timeout(1500)  # let the charts draw
            page.screenshot(path=str(ARTIFACTS / "board_timeseries.png"))

            page.goto(url + "#scalars")
            _wait_for_text(page, ["epoch_accuracy", "epoch_learning_rate", f"{run}/validation"])
            page.wait_for_timeout(2500)
            page.screenshot(path=str(ARTIFACTS / "board_scalars.png"))

            page.goto(url + "#images")
            _wait_for_text(page, ["augmented_training_images", "test_confusion_matrix"])
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "board_images.png"))

            page.goto(url + "#hparams")
            text = _wait_for_text(page, ["model.name", "train.lr", "lenet5", "best_val_accuracy"])
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "board_hparams.png"))

            page.goto(url + "#graphs")
            page.wait_for_timeout(4000)
            assert "Graph visualization failed" not in _page_text(page)
            page.screenshot(path=str(ARTIFACTS / "board_graphs.png"))
        finally:
            browser.close()
    for name in ("timeseries", "scalars", "images", "hparams", "graphs"):
        assert (ARTIFACTS / f"board_{name}.png").stat().st_size > 10_000


def _check_with_chromium_cli(exe, url, run):
    """No Playwright: Chromium's --dump-dom (the Time Series page is plain DOM) and --screenshot."""
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                "--window-size=1600,1000"]
        dom = subprocess.run(base + ["--dump-dom", url + "#timeseries"], capture_output=True, text=True,
                             timeout=180).stdout
        assert run in dom and "epoch_accuracy" in dom, dom[-2000:]
        for tab in ("timeseries", "hparams"):
            shot = ARTIFACTS / f"board_{tab}.png"
            shot.unlink(missing_ok=True)
            subprocess.run(base + [f"--screenshot={shot}", url + f"#{tab}"], capture_output=True, timeout=180)
            assert shot.is_file() and shot.stat().st_size > 10_000, tab


def test_ctrl_c_stops_board_cleanly(board):
    _, _, proc = board
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "TensorBoard stopped" in out and "Traceback" not in err
