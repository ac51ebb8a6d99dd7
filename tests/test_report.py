"""Reports over a real MLflow SQLite store filled with runs shaped like the ones the app records."""

import contextlib
import io
import os
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy.stats import binomtest

from lstm_exp.sweeps import figures, labels, report, statistics, table
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
    assert "group" in table.format_table(summary) and "div_rate" in table.format_table(summary)


def test_summarise_by_an_unknown_factor_is_a_user_error(store):
    uri, _, _ = store
    with pytest.raises(statistics.UserError, match="unknown factor optim.clipp"):
        statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP), by=["optim.clipp"])


@pytest.fixture(scope="module")
def written(store, tmp_path_factory):
    """The report of the 2 clip x 6 seed sweep, written once: its paths and what it printed."""
    uri, _, _ = store
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        paths = report.write_report(queries.load_runs(uri, sweep_id=SWEEP), tmp_path_factory.mktemp("report"))
    return paths, printed.getvalue()


def test_write_report_writes_csv_and_figures(store, written):
    uri, _, _ = store
    paths, printed = written
    assert {key: p.name for key, p in paths.items()} == report.REPORT_FILES
    assert {"report.csv", "survival.png", "survival.csv", "loss_curves.csv"} < set(report.REPORT_FILES.values())
    assert all(p.stat().st_size > 0 for p in paths.values())
    csv = pd.read_csv(paths["csv"])
    assert list(csv["diverged"]) == [1, 4] and list(csv["runs"]) == [6, 6]
    assert table.format_table(statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP))) in printed


def test_summary_has_the_survival_and_the_range_of_divergence_steps(store):
    uri, _, _ = store
    summary = statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP))
    no_clip, clip5 = row(summary, "null"), row(summary, "5")
    assert (no_clip.first_div_min, no_clip.first_div_max) == (120, 300)
    assert (clip5.first_div_min, clip5.first_div_max) == (90, 90)
    assert no_clip.surv_median == 250  # S: 5/6 at 120, 4/6 at 200, 3/6 at 250
    assert pd.isna(clip5.surv_median)  # 1 of the 5 completed runs diverged: S stays at 0.8


def test_survival_csv_is_the_kaplan_meier_table_of_the_completed_runs(written):
    paths, _ = written
    table = pd.read_csv(paths["survival_csv"])
    assert list(table.columns) == ["group", "step", "at_risk", "events", "censored", "survival"]
    clip5 = table[table["group"].eq("optim.clip=5")]  # the crashed run is not one of them
    assert clip5[["step", "at_risk", "events", "censored"]].values.tolist() == [[90, 5, 1, 0], [399, 4, 0, 4]]
    assert clip5["survival"].tolist() == pytest.approx([0.8, 0.8])
    no_clip = table[table["group"].eq("optim.clip=null")]
    assert no_clip["step"].tolist() == [120, 200, 250, 300, 399]
    assert no_clip["survival"].tolist() == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 2 / 6])


def test_loss_curves_csv_counts_diverged_runs_as_inf_to_the_last_step(written):
    paths, _ = written
    lines = paths["loss_curves_csv"].read_text().splitlines()
    assert lines[0] == "group,step,q25,median,q75,alive,n"
    last = [line for line in lines if line.split(",")[1] == "300"]  # the healthy runs' last logged step
    # clip=5: 4 healthy runs at 0.25 and one diverged at step 90; no clip: 2 healthy runs at 0.25, 3 diverged
    # before step 300 and one at it (its last value, 5, still counts there)
    assert last == ["optim.clip=5,300,0.25,0.25,0.25,4,5", "optim.clip=null,300,0.25,inf,inf,3,6"]
    assert len(lines) == 1 + len(set(lines[1:]))
    curves = pd.read_csv(paths["loss_curves_csv"]).set_index(["group", "step"])
    assert curves.loc[("optim.clip=null", 120), "alive"] == 6 and curves.loc[("optim.clip=null", 121), "alive"] == 5
    assert curves.loc[("optim.clip=null", 250), "median"] < float("inf")  # 2 of 6 diverged before step 250
    assert curves.loc[("optim.clip=null", 251), "median"] == float("inf")  # the 3rd diverged at 250: half


def test_the_legend_counts_the_runs_of_each_curve(store):
    uri, _, _ = store
    summary = statistics.summarise(queries.load_runs(uri, sweep_id=SWEEP))
    unwrapped = [" ".join(entry.split()) for entry in figures.legend_labels(summary)]
    assert unwrapped == [
        "optim.clip=5 (n=5, 1 diverged, 1 not completed, left out)",
        "optim.clip=null (n=6, 4 diverged, half by step 250)",
    ]


def runs_frame(**params) -> pd.DataFrame:
    """Completed runs that did not diverge, with these params (lists, one value per run)."""
    n = len(next(iter(params.values())))
    frame = pd.DataFrame({f"params.{key}": values for key, values in params.items()})
    return frame.assign(status="FINISHED", **{"tags.outcome": "finished", "params.steps": "300"}).iloc[:n]


def test_paths_spelled_differently_are_one_condition_and_diagnoses_are_left_out():
    alice = os.path.expanduser("~/books/alice.txt")
    df = runs_frame(
        **{
            "task.corpus": [
                "~/books/alice.txt",
                alice,
                os.path.dirname(alice) + "/../books//alice.txt",
                "/d/bob.txt",
                "/d/x",
            ],
            "model.impl": ["./ex/cell.py:Cell", "ex/cell.py:Cell", "ex//cell.py:Cell", "ex/./cell.py:Cell", "null"],
            "nan.history": ["50", None, None, "50", "50"],  # logged by newer runs only: no factor
            "mode": ["train", "train", "train", "train", "diagnose"],
        }
    )
    summary = statistics.summarise(df)
    assert labels.factor_columns(summary) == ["task.corpus"]
    assert summary[["task.corpus", "runs"]].values.tolist() == [["/d/bob.txt", 1], [os.path.normpath(alice), 3]]


def test_a_report_on_diagnoses_only_is_an_empty_table(tmp_path, capsys):
    paths = report.write_report(runs_frame(**{"mode": ["diagnose", "gradcheck"]}), tmp_path)
    assert list(paths) == ["csv"] and pd.read_csv(paths["csv"]).empty
    assert capsys.readouterr().out == "(no runs)\n"


def test_two_implementations_with_one_class_name_keep_their_files():
    values = pd.Series(["a/x.py:Cell", "b/y.py:Cell", "pkg.mod:Other", "null"])
    assert statistics.readable("model.impl", values).tolist() == ["a/x.py:Cell", "b/y.py:Cell", "Other", "core"]


def test_divergence_steps_come_from_diverged_at_step_or_else_nan_first_step():
    df = runs_frame(**{"optim.clip": ["0"] * 4}).assign(
        **{
            "tags.outcome": ["diverged_loss", "diverged_nan", "diverged_nan", "finished"],
            "tags.diverged_at_step": ["12", "30", None, None],  # the older NaN run has only nan.first_step
            "tags.nan.first_step": [None, "30", "8", None],
        }
    )
    summary = statistics.summarise(df)
    assert summary.loc[0, ["first_div_step", "first_div_min", "first_div_max"]].tolist() == [12, 8, 30]
    assert summary.loc[0, "surv_median"] == 12  # S: 3/4 at 8, 2/4 at 12


def test_the_printed_table_stays_narrow_with_many_long_factors():
    long = "/very/long/path/to/some/corpora/of/text/"
    df = runs_frame(
        **{
            "task.corpus": [f"{long}alice.txt", f"{long}bob.txt", f"{long}carol.txt"],
            "model.impl": ["null", "examples/seed000.py:Seed000Cell", "null"],
            "optim.clip_mode": ["norm", "value", "state"],
            "init.forget_bias": ["0", "1", "2"],
            "optim.lr": ["0.1", "0.01", "0.001"],
        }
    )
    text = table.format_table(statistics.summarise(df))
    assert max(map(len, text.splitlines())) <= table.TABLE_WIDTH
    assert all(name in text for name in ("alice.txt", "bob.txt", "carol.txt", "Seed000Cell", "clip_mode", "div_rate"))
    one = table.format_table(statistics.summarise(runs_frame(**{"optim.clip": ["0", "6"]})))
    assert one.splitlines()[0].startswith("optim.clip") and len(one.splitlines()) == 3  # one table, names whole


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
    assert table.format_table(statistics.summarise(queries.load_runs(uri, experiments=["clip"]))) in stdout
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
