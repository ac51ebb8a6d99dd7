"""Reports over a real MLflow SQLite store filled with runs shaped like the ones the app records."""

import subprocess
import sys

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy.stats import binomtest

from lstm_exp.sweeps import report, statistics
from lstm_exp.tracking import queries

SWEEP = "outputs/multirun/2025-01-01/10-00-00"
OTHER_SWEEP = "outputs/multirun/2025-01-02/10-00-00"
T0 = 1_700_000_000_000  # ms

# clip=null: seeds 0-3 diverge (first steps 120, 200, 250, 300), 4-5 converge.
# clip=5: seed 4 diverges at step 90, seed 5 crashes, 0-3 converge.
NO_CLIP = {0: 120, 1: 200, 2: 250, 3: 300}
CLIP5_DIVERGED, CLIP5_CRASHED = {4: 90}, 5


def params(clip: str, seed: int, run_name: str) -> dict:
    """Flattened config params as the app logs them (all strings, None as "null")."""
    return {
        "task.name": "sin",
        "task.seq_len": "30",
        "model.hidden": "8",
        "model.dtype": "float64",
        "init.scheme": "xavier",
        "optim.name": "sgd",
        "optim.lr": "0.1",
        "optim.clip": clip,
        "optim.clip_mode": "norm",
        "seed": str(seed),
        "steps": "400",
        "progress": "false",
        "tracking.enabled": "True",
        "tracking.uri": "null",
        "tracking.experiment": "clip",
        "tracking.run_name": run_name,
        "tracking.log_every": "100",
    }


def add_run(
    client,
    experiment_id,
    clip,
    seed,
    *,
    sweep=SWEEP,
    job=0,
    diverged_at=None,
    crashed=False,
    wall_s=10.0,
    final_loss=0.05,
    parent=None,
):
    """One job's run: params, tags, a train_loss history and the terminal status the app would leave."""
    tags = {"task": "sin", "hydra.overrides": f"optim.clip={clip} seed={seed}", "sweep.job": str(job)}
    if sweep is not None:
        tags["sweep.id"] = sweep
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    start = T0 + 60_000 * job
    run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=f"job{job}")
    run_id = run.info.run_id
    last = diverged_at if diverged_at is not None else 400
    steps = [s for s in range(0, 401, 100) if s < last]
    losses = [1.0 / (1 + s / 100) if diverged_at is None else 1.0 + s / 50 for s in steps]
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in params(clip, seed, f"run{job}").items()],
        metrics=[Metric("train_loss", v, start, s) for s, v in zip(steps, losses, strict=True)],
    )
    if crashed:
        client.set_tag(run_id, "outcome", "failed")
        client.set_tag(run_id, "error", "RuntimeError: boom")
        client.set_terminated(run_id, "FAILED", end_time=start + 1000)
        return run_id
    if diverged_at is not None:
        outcome = {
            "outcome": "diverged_nan",
            "final_loss": "9.5",
            "nan.first_step": str(diverged_at),
            "nan.where": "dh0",
            "divergence": f"diverged at step {diverged_at}",
        }
    else:
        outcome = {"outcome": "converged", "final_loss": f"{final_loss:.6g}"}
    for key, value in outcome.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, "FINISHED", end_time=start + int(wall_s * 1000))
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a 2 clip x 6 seed sweep (and its parent run), a single run, another sweep and a stale run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"
    client = MlflowClient(uri)
    clip_exp = client.create_experiment("clip")
    parent = client.create_run(clip_exp, tags={"sweep.id": SWEEP, "sweep.role": "parent"}).info.run_id
    job = 0
    for clip in ("null", "5"):
        for seed in range(6):
            diverged = (NO_CLIP if clip == "null" else CLIP5_DIVERGED).get(seed)
            add_run(
                client,
                clip_exp,
                clip,
                seed,
                job=job,
                diverged_at=diverged,
                parent=parent,
                crashed=clip == "5" and seed == CLIP5_CRASHED,
                wall_s=10.0 + job,
                final_loss=0.01 * (seed + 1),
            )
            job += 1
    client.set_terminated(parent, "FINISHED")
    add_run(client, clip_exp, "1", 0, sweep=None)
    add_run(client, clip_exp, "5", 0, sweep=OTHER_SWEEP, diverged_at=10)
    stale_exp = client.create_experiment("stale")
    stale = client.create_run(stale_exp, tags={"outcome": "running"}).info.run_id
    return uri, client, stale


def row(summary, clip):
    return summary.set_index("optim.clip").loc[clip]


def test_load_runs_filters_by_sweep_and_drops_the_parent(store):
    uri, _, _ = store
    everything = queries.load_runs(uri, experiments=["clip"])
    sweep = queries.load_runs(uri, experiments=["clip"], sweep_id=SWEEP)
    assert len(everything) == 14 and len(sweep) == 12
    assert set(sweep["tags.sweep.id"]) == {SWEEP}
    assert "parent" not in set(queries.column(sweep, "tags.sweep.role").dropna())
    assert len(queries.load_runs(uri, sweep_id=SWEEP, tags={"outcome": "diverged_nan"})) == 5
    assert queries.load_runs(uri, experiments=["nope"]).empty
    assert sweep.attrs["tracking_uri"] == uri


def test_varied_factors_leave_out_seeds_and_run_identifiers(store):
    uri, _, _ = store
    assert statistics.varied_factors(queries.load_runs(uri, sweep_id=SWEEP)) == ["optim.clip"]


def test_varied_factors_ignore_option_defaults_and_launch_keys():
    df = pd.DataFrame(
        {
            "params.optim.name": ["sgd", "adam"],
            "params.optim.b1": [None, "0.9"],
            "params.seed": ["0", "1"],
            "params.hydra.job.num": ["0", "1"],
            "params.resume": ["null", "r1"],
            "params.tracking.run_name": ["a", "b"],
            "params.model.hidden": ["8", "8"],
        }
    )
    assert statistics.varied_factors(df) == ["optim.name"]


def test_summarise_counts_rates_and_wilson_bounds(store):
    uri, _, _ = store
    summary = statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP))
    assert list(summary["optim.clip"]) == ["5", "null"]  # numbers first, "null" (no clipping) last
    no_clip, clip5 = row(summary, "null"), row(summary, "5")
    assert (no_clip.runs, no_clip.failed, no_clip.completed, no_clip.diverged) == (6, 0, 6, 4)
    assert (clip5.runs, clip5.failed, clip5.completed, clip5.diverged) == (6, 1, 5, 1)
    for r, (k, n) in ((no_clip, (4, 6)), (clip5, (1, 5))):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert r.div_rate == pytest.approx(k / n)
        assert (r.div_low, r.div_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert no_clip.first_div_step == 225 and clip5.first_div_step == 90
    # final loss over runs that neither diverged nor crashed: seeds 4, 5 (no clip); seeds 0-3 (clip 5)
    assert no_clip.loss_median == pytest.approx(0.055)
    assert (clip5.loss_q25, clip5.loss_median, clip5.loss_q75) == (
        pytest.approx(0.0175),
        pytest.approx(0.025),
        pytest.approx(0.0325),
    )
    assert no_clip.wall_s == pytest.approx(12.5)  # jobs 0-5 took 10-15 s


def test_summarise_without_a_factor_is_one_row_all(store):
    uri, _, _ = store
    single = queries.load_runs(uri, experiments="clip")
    single = single[single["params.optim.clip"].eq("1")]
    summary = statistics.summarise(single)
    assert list(summary["group"]) == ["all"] and summary.loc[0, "runs"] == 1
    assert "group" in statistics.format_table(summary) and "div_rate" in statistics.format_table(summary)


def test_summarise_by_an_unknown_factor_is_a_user_error(store):
    uri, _, _ = store
    with pytest.raises(statistics.UserError, match="unknown factor optim.clipp"):
        statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP), by=["optim.clipp"])


def test_write_report_writes_csv_and_figures(store, tmp_path, capsys):
    uri, _, _ = store
    df = queries.load_runs(uri, sweep_id=SWEEP)
    paths = report.write_report(df, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.csv", "divergence_rate.png", "loss_curves.png"}
    assert all(p.stat().st_size > 0 for p in paths.values())
    csv = pd.read_csv(paths["csv"])
    assert list(csv["diverged"]) == [1, 4] and list(csv["runs"]) == [6, 6]
    assert statistics.format_table(statistics.summarise(df)) in capsys.readouterr().out


@pytest.fixture(scope="module")
def cli(store, tmp_path_factory):
    """The CLI as a user runs it, a match and a no-match, run at once (each start costs seconds of imports)."""
    uri, _, _ = store
    out = tmp_path_factory.mktemp("cli")
    commands = {
        "match": ["--uri", uri, "--experiment", "clip", "--out", str(out / "match")],
        "none": ["--uri", uri, "--experiment", "clip", "--sweep-id", "no/such/sweep", "--out", str(out / "none")],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "lstm_exp.report", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        results[name] = (proc.returncode, stdout, stderr)
    return out, results


def test_cli_prints_the_table_and_exits_0(store, cli):
    uri, _, _ = store
    out, results = cli
    code, stdout, stderr = results["match"]
    assert code == 0, stderr
    assert statistics.format_table(statistics.summarise(queries.load_runs(uri, experiments=["clip"]))) in stdout
    assert (out / "match" / "report.csv").is_file() and (out / "match" / "loss_curves.png").is_file()


def test_cli_exits_2_with_one_line_when_nothing_matches(cli):
    out, results = cli
    code, _, stderr = results["none"]
    assert code == 2
    assert stderr.strip() == "error: no runs match: experiment=clip, sweep=no/such/sweep"
    assert not (out / "none").exists()


def test_cli_refuses_a_store_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    assert report.main(["--uri", f"sqlite:///{missing}"]) == 2
    assert capsys.readouterr().err.startswith("error: no MLflow store at")
    assert not missing.exists()


def test_stale_runs_are_listed_and_fixed(store, capsys):
    uri, client, stale = store
    assert list(queries.stale_runs(uri)["run_id"]) == [stale]
    assert report.main(["--uri", uri, "--stale"]) == 0
    assert stale in capsys.readouterr().out
    assert client.get_run(stale).info.status == "RUNNING"
    assert report.main(["--uri", uri, "--experiment", "stale", "--fix-stale"]) == 0
    assert f"marked FAILED: {stale}" in capsys.readouterr().out
    run = client.get_run(stale)
    assert run.info.status == "FAILED"
    assert run.data.tags["outcome"] == "failed" and run.data.tags["error"] == queries.STALE_ERROR
    assert queries.stale_runs(uri).empty


def test_cli_marks_an_unknown_experiment_in_its_one_line_error(store, capsys):
    uri, _, _ = store
    assert report.main(["--uri", uri, "--experiment", "clpi"]) == 2
    assert capsys.readouterr().err == "error: no runs match: experiment=clpi (no such experiment), sweep=any\n"
