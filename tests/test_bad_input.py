"""The bad-input catalogue: each mistake, through the real command line, gets one readable message naming
the problem, a non-zero exit within 10 s, no traceback, and no MLflow run left RUNNING."""

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.slow

CASES = {
    "misspelt key": (["optim.clipp=6"], "optim.clipp"),
    "misspelt key appended": (["+optim.clipp=6"], "unknown setting optim.clipp (did you mean optim.clip?)"),
    "wrong type": (["optim.lr=abc"], "optim.lr"),
    "wrong type for seed": (["seed=three"], "seed"),
    "unknown task": (["task=sine"], "Could not find 'task/sine'"),
    "unknown optimizer": (["optim=adamw"], "Could not find 'optim/adamw'"),
    "unknown init": (["init=glorot"], "Could not find 'init/glorot'"),
    "zero lr": (["optim.lr=0"], "optim.lr=0.0: must be > 0"),
    "negative lr": (["optim.lr=-0.1"], "optim.lr=-0.1: must be > 0"),
    "negative clip": (["optim.clip=-1"], "optim.clip=-1.0: must be >= 0"),
    "unknown clip_mode": (["optim.clip_mode=global"], "optim.clip_mode"),
    "hidden size 0": (["model.hidden=0"], "model.hidden=0: must be > 0"),
    "batch size 0": (["batch_size=0"], "batch_size=0: must be > 0"),
    "unknown mode": (["mode=fit"], "mode"),
    "seq_len longer than the corpus": (
        ["task=char", "task.corpus=short.txt", "task.seq_len=500"],
        "task.seq_len=500 is too long",
    ),
    "missing corpus": (["task=char", "task.corpus=missing.txt"], "no such file"),
    "empty corpus": (["task=char", "task.corpus=empty.txt"], "fewer than 2 distinct"),
    "corpus not UTF-8": (["task=char", "task.corpus=latin1.txt"], "is not UTF-8 text"),
    "directory as corpus": (["task=char", "task.corpus=somedir"], "is a directory"),
    "unwritable output directory": (["hydra.run.dir=afile/run"], "cannot create the output folder"),
    "unreachable tracking server": (["tracking.uri=http://127.0.0.1:9"], "no MLflow server answers"),
    "malformed tracking URI": (["tracking.uri=mlflow.db"], "for a SQLite file write sqlite:///<path>"),
    "file-store tracking URI": (["tracking.uri=file:///tmp/mlruns"], "MLflow's file store, which MLflow 3 refuses"),
    "unknown tracking URI scheme": (["tracking.uri=ftp://host/x"], "unknown scheme 'ftp'"),
    "tracking store folder missing": (["tracking.uri=sqlite:///nowhere/mlflow.db"], "does not exist"),
    "resume path that does not exist": (["resume=outputs/nothing-here"], "resume=outputs/nothing-here"),
    "resume folder that is not ours": (["resume=somedir"], "is not an lstm_exp run directory"),
    "negative seed": (["seed=-1"], "seed=-1: must be >= 0"),
    "an unsupported dtype": (["model.dtype=float16"], "Invalid value 'float16', expected one of [float64, float32]"),
    "infinite lr": (["optim.lr=inf"], "optim.lr=inf: must be a finite number"),
    "empty experiment name": (["tracking.experiment="], "tracking.experiment='': must not be empty"),
    "experiment name of 10,000 characters": ([f"tracking.experiment={'x' * 10000}"], "at most 256 characters"),
    "a model larger than the memory": (["model.hidden=100000"], "model.hidden=100000: training needs about"),
    "a truncated checkpoint": (["resume=truncated"], "is damaged or not a checkpoint"),
    "a corrupted checkpoint": (["resume=corrupted"], "is damaged or not a checkpoint"),
    # settings that would do nothing, and the ranges and grammar around them
    "clip_mode without clip": (["optim.clip_mode=value"], "optim.clip_mode=value does nothing without optim.clip"),
    "layout without model.impl": (["layout=seed000"], "layout=seed000 does nothing without model.impl"),
    "init.std without init=normal": (["init.std=0.5"], "init.std=0.5 does nothing with init=xavier"),
    "checkpoints never written": (["checkpoint.every=500"], "checkpoint.every=500 is more than steps=3"),
    "negative loss ratio": (["nan.loss_ratio=-1"], "nan.loss_ratio=-1.0: must be 0 (off) or > 1"),
    "convergence ratio above 1": (["converge_ratio=2"], "converge_ratio=2.0: must be in (0, 1)"),
    "a tilde inside a value": (["tracking.experiment=a~b"], "quote the value for Hydra inside the shell's quotes"),
    "no sweep jobs at a time": (["-m", "hydra.launcher.n_jobs=0", "seed=0,1"], "hydra.launcher.n_jobs=0: must be"),
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, make_cfg):
    """The composed config and the checkpoint of a real 10-step run, for damaged copies of it."""
    from omegaconf import OmegaConf

    from lstm_exp.runner import train
    from lstm_exp.runner.checkpoint import FILENAME
    from lstm_exp.runner.schema import plain

    cfg = make_cfg("task=sin", "steps=10", "checkpoint.every=5")
    tmp = tmp_path_factory.mktemp("real_run")
    train.run(cfg, run_dir=tmp)
    return OmegaConf.to_yaml(plain(cfg)), (tmp / FILENAME).read_bytes()


def fixtures(cwd, real_run):
    (cwd / "short.txt").write_text("hello world, " * 10, encoding="utf-8")
    (cwd / "empty.txt").write_text("", encoding="utf-8")
    (cwd / "latin1.txt").write_bytes("déjà vu, à la carte ".encode("latin-1") * 20)
    (cwd / "somedir").mkdir()
    (cwd / "afile").write_text("not a folder")
    config, checkpoint = real_run
    for name, content in (("truncated", checkpoint[:2000]), ("corrupted", b"garbage" * 100)):
        (cwd / name / ".hydra").mkdir(parents=True)
        (cwd / name / ".hydra" / "config.yaml").write_text(config)
        (cwd / name / "checkpoint.npz").write_bytes(content)


def run_case(app, root, name, real_run):
    cwd = root / name.replace(" ", "_").replace(",", "")
    cwd.mkdir()
    fixtures(cwd, real_run)
    overrides, _ = CASES[name]
    t0 = time.monotonic()
    proc = app.run(cwd, "steps=3", *overrides, timeout=120)
    return cwd, proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, app, real_run):
    root = tmp_path_factory.mktemp("bad")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CASES, pool.map(lambda n: run_case(app, root, n, real_run), CASES), strict=True))


def running_runs(cwd):
    db = cwd / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0]


def test_the_catalogue_has_at_least_18_cases():
    assert len(CASES) >= 18


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_cleanly(outcomes, name):
    cwd, proc, seconds = outcomes[name]
    _, expected = CASES[name]
    assert proc.returncode != 0, proc.stdout[-500:]
    assert expected in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert seconds < 10, f"took {seconds:.1f} s"
    assert running_runs(cwd) == 0
    assert not (cwd / "mlflow.db").exists() and not (cwd / "mlruns").exists()  # nothing half-written


@pytest.mark.parametrize("name", list(CASES))
def test_every_refusal_is_one_line_and_exit_2(outcomes, name):
    _, proc, _ = outcomes[name]
    assert proc.returncode == 2, proc.stderr[-1500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-1500:]
