"""What a reviewer sees in a real browser: ``mlflow ui`` over a finished sweep, opened in headless Chromium.
The runs table shows the sweep's parent row with its runs under it, a run's page names the run and its sweep,
and its Model metrics tab draws the train_loss curve. Screenshots land in outputs/browser/.

Needs a Chromium (Debian's ``chromium``: ``.ci/chromium start``) and Playwright (the dev extra); skips without."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the tests skip (pytestmark)
    sync_playwright = None

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: .ci/chromium start)"),
    pytest.mark.skipif(sync_playwright is None, reason="Playwright is not installed (pip install playwright)"),
]

SHOTS = Path(__file__).resolve().parents[1] / "outputs" / "browser"
TIMEOUT_MS = 60_000  # a cold single-page app on a busy 2-core machine
if sync_playwright is not None:
    # page.set_default_timeout governs actions (click, fill, goto); expect() keeps its own default of 5 s
    # unless told, and a cold MLflow UI takes longer than that to fill its runs table
    expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished two-run sweep (seed=0,1) in a fresh store: its experiment, parent and children (id, name)."""
    cwd = tmp_path_factory.mktemp("browser")
    cmd = [sys.executable, "-m", "lstm_exp", "-m", "progress=false", "hydra.sweep.dir=outputs/sweep"]
    done = subprocess.run(
        [*cmd, "task=sin", "steps=60", "log_every=5", "seed=0,1"], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    uri = f"sqlite:///{cwd}/mlflow.db"
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "sin"]
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.run_name"])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [(r.info.run_id, r.info.run_name) for r in runs if r is not parent]
    assert [name for _, name in children] == [f"sin adam steps=60 log_every=5 seed={s}" for s in (0, 1)]
    parent_id, parent = parent.info.run_id, parent.info.run_name
    # and one run that diverges at step 17 in the same store: its chart must reach the blow-up
    done = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "progress=false", "experiment=case000_char", "seed=5", "steps=30"],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and "diverged_loss at step 17" in done.stdout, done.stderr[-2000:]
    (char,) = [e for e in client.search_experiments() if e.name == "char"]
    (diverged,) = client.search_runs([char.experiment_id])
    return SimpleNamespace(
        cwd=cwd,
        uri=uri,
        id=experiment.experiment_id,
        parent=parent,
        parent_id=parent_id,
        children=children,
        diverged=(char.experiment_id, diverged.info.run_id, diverged.info.run_name),
    )


@pytest.fixture(scope="module")
def ui(sweep):
    """``mlflow ui`` on a free port of 127.0.0.1 over the sweep's store; its base URL. Stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = sweep.cwd / "mlflow-ui.log"
    log = log_path.open("w")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", sweep.uri, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1"]  # one worker: quicker to start, enough for one browser
    server = subprocess.Popen(cmd, cwd=sweep.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not come up on {base}:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the uvicorn worker goes too
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    """The installed Chromium, headless, driven by Playwright (no browser download of its own)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=TIMEOUT_MS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield page
    page.close()


def close_assistant(page):
    """MLflow 3's assistant panel opens beside every page; closed, the screenshots show the page itself."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def wait_for_runs_table(page, count):
    """The runs table has loaded its runs: MLflow shows "<n> matching runs" once the search has answered (the
    header rows are drawn before, empty)."""
    expect(page.get_by_text(re.compile(rf"^\s*{count}\s+matching runs\s*$"))).to_be_visible()


def test_the_runs_table_shows_the_sweep_with_its_runs_under_it(ui, sweep, page):
    started = time.monotonic()
    page.goto(f"{ui}/#/experiments/{sweep.id}?workflowType=machine_learning")
    wait_for_runs_table(page, 1 + len(sweep.children))
    print(f"the runs table loaded {time.monotonic() - started:.1f} s after the page was opened")
    rows = page.get_by_role("row")
    parent = rows.filter(has=page.get_by_text(sweep.parent, exact=True))
    expect(parent).to_be_visible()
    close_assistant(page)
    # the children are grouped under their parent, collapsed: the (+) in its name cell shows them
    for _, name in sweep.children:
        expect(page.get_by_text(name, exact=True)).to_have_count(0)
    parent.locator('button[data-component-id*="runnamecellrenderer"]').click()
    for _, name in sweep.children:
        expect(rows.filter(has=page.get_by_text(name, exact=True))).to_be_visible()
    wait_for_runs_table(page, 1 + len(sweep.children))
    page.screenshot(path=SHOTS / "experiment.png")


def test_a_run_page_names_the_run_and_charts_its_loss(ui, sweep, page):
    run_id, name = sweep.children[0]
    page.goto(f"{ui}/#/experiments/{sweep.id}/runs/{run_id}?workflowType=machine_learning")
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=sweep.parent, exact=True)).to_be_visible()  # "Parent run"
    close_assistant(page)
    page.screenshot(path=SHOTS / "run.png")

    page.get_by_role("tab", name="Model metrics").click()
    page.get_by_placeholder("Search metric charts").fill("train_loss")  # charts draw lazily, on screen only
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_text("train_loss", exact=True)
    )
    expect(card).to_have_count(1)
    expect(card.get_by_text(f"{name} (train_loss)", exact=True)).to_be_visible()  # the legend: this run's line
    # the plotly line through the logged points (every 5 of 60 steps): a path of many segments
    expect(card.locator(".js-plotly-plot .scatterlayer path.js-line").first).to_have_attribute(
        "d", re.compile(r"M[\d.]+,[\d.]+(L[\d.]+,[\d.]+){5,}")
    )
    page.screenshot(path=SHOTS / "metrics.png")


def train_loss_line(page):
    page.get_by_role("tab", name="Model metrics").click()
    page.get_by_placeholder("Search metric charts").fill("train_loss")
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_text("train_loss", exact=True)
    )
    return card.locator(".js-plotly-plot .scatterlayer path.js-line").first


def test_a_diverged_runs_chart_reaches_its_divergence_step(ui, sweep, page):
    experiment_id, run_id, name = sweep.diverged
    page.goto(f"{ui}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning")
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    close_assistant(page)
    # the logged steps and then every step up to the divergence (15, 16, 17): the chart's last points are one step
    # apart (a log_every window apart before), and its last point, step 17, is its highest loss (its lowest y)
    line = train_loss_line(page)
    expect(line).to_have_attribute("d", re.compile(r"M[\d.]+,[\d.]+(L[\d.]+,[\d.]+){3,}"))
    points = [tuple(map(float, p.split(","))) for p in re.findall(r"[\d.]+,[\d.]+", line.get_attribute("d"))]
    (x0, _), (x1, _) = points[:2]
    gaps = [b[0] - a[0] for a, b in zip(points[-3:-1], points[-2:], strict=True)]
    assert abs(gaps[0] - gaps[1]) < 0.5 and gaps[-1] < (x1 - x0) / 2, points
    assert points[-1][1] == min(y for _, y in points), points
    page.screenshot(path=SHOTS / "diverged.png")


def test_the_sweeps_parent_run_shows_the_answer_per_group(ui, sweep, page):
    page.goto(f"{ui}/#/experiments/{sweep.id}/runs/{sweep.parent_id}?workflowType=machine_learning")
    expect(page.get_by_role("heading", name=sweep.parent, exact=True)).to_be_visible()
    close_assistant(page)
    # the description is rendered as markdown: a real table with the group's row
    table = page.locator("table").filter(has=page.get_by_text("rate (95 % interval)"))
    expect(table).to_be_visible()
    expect(table.get_by_role("cell", name="0.00 [0.00, 0.66]", exact=True)).to_be_visible()
    page.screenshot(path=SHOTS / "parent.png")
