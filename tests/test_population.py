"""A population: S members trained as one computation give, bit for bit, each member's numbers trained alone."""

import numpy as np
import pytest

from lstm_exp.core.members import member, stack
from lstm_exp.core.network import loss_and_grads, param_shapes

SLOW = pytest.mark.slow  # the other optimizers' and clips' whole runs (their steps are checked above, in the fast set)


def problem(seed, B, T, D, H, K, loss, dtype):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 0.5, size=s).astype(dtype) for k, s in param_shapes(D, H, K).items()}
    x = rng.integers(0, D, size=(B, T)) if loss == "xent" else rng.normal(size=(B, T, D))
    y = rng.integers(0, K, size=(B, T)) if loss == "xent" else rng.normal(size=(B, T, K))
    h0, c0 = (rng.normal(size=(B, H)).astype(dtype) for _ in range(2))
    return params, x, y, h0, c0


def identical(a, b) -> bool:
    return np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize(
    "loss,reduction,B,T,D,H,K",
    [
        ("mse", "mean", 1, 7, 1, 5, 1),  # seed 002's sine (H = 5, B = 1)
        ("mse", "sum", 4, 9, 1, 10, 1),  # seed 001's x2 (H = 10)
        ("xent", "mean", 3, 6, 11, 8, 11),  # a char model: token ids
        ("xent", "sum", 1, 25, 17, 16, 17),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("state_clip", [None, "per member"])
def test_each_member_of_a_population_is_bit_identical_to_itself_alone(
    loss, reduction, B, T, D, H, K, dtype, state_clip
):
    S = 5
    alone = [problem(seed, B, T, D, H, K, loss, dtype) for seed in range(S)]
    clips = np.array([0.05, 0.1, 0.5, 1.0, 10.0])  # small enough to act
    together = loss_and_grads(
        stack([a[0] for a in alone]),
        *(np.stack([a[i] for a in alone]) for i in range(1, 5)),
        loss,
        reduction,
        state_clip=None if state_clip is None else clips[:, None, None],
    )
    for s, (params, x, y, h0, c0) in enumerate(alone):
        one = loss_and_grads(params, x, y, h0, c0, loss, reduction, state_clip=None if state_clip is None else clips[s])
        assert identical(together.loss[s], np.float64(one.loss))
        for name, grad in one.grads.items():
            assert identical(member(together.grads, s)[name], grad), name
        for got, want in zip((*together.state, *together.dstate), (*one.state, *one.dstate), strict=True):
            assert identical(got[s], want)
        assert identical(together.outputs[s], one.outputs)
        if state_clip is not None:
            assert 0 <= one.clamped <= 1 and identical(together.clamped[s], np.float64(one.clamped))


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("clip_mode", [None, "norm", "value", "state"])
def test_a_member_trained_in_a_population_with_its_own_lr_and_clip_ends_bit_identical(name, clip_mode):
    from lstm_exp.core import optim

    S, steps = 4, 12
    lrs = np.array([0.05, 0.1, 0.3, 1.0])  # the last one large enough to blow some member up
    clips = np.array([0.1, 0.5, 1.0, 5.0]) if clip_mode else None
    hyper = {"momentum": {"beta": np.array([0.5, 0.9, 0.95, 0.99])}, "adam": {"b2": np.array([0.9, 0.99, 0.999, 0.5])}}
    alone = [problem(seed, 2, 6, 1, 5, 1, "mse", np.float64) for seed in range(S)]

    def train(params, x, y, h0, c0, lr, clip, members, **hp):
        mode = clip_mode or "norm"
        opt = optim.build(name, lr, None if mode == "state" else clip, mode, members=members, **hp)
        state = opt.init(params)
        for _ in range(steps):
            r = loss_and_grads(params, x, y, h0, c0, "mse", "sum", state_clip=clip if mode == "state" else None)
            updates, state = opt.update(r.grads, state, params)
            params = optim.apply_updates(params, updates)
        return params, optim.clip_stats(state)

    arrays = (np.stack([a[i] for a in alone]) for i in range(1, 5))
    clip_each = None if clips is None else clips[:, None, None] if clip_mode == "state" else clips
    together, stats = train(stack([a[0] for a in alone]), *arrays, lrs, clip_each, True, **hyper.get(name, {}))
    assert all(np.isfinite(v[0]).all() for v in together.values())  # not a comparison of NaNs
    if clip_mode in ("norm", "value"):
        assert np.any(stats.acted)
    for s, (params, x, y, h0, c0) in enumerate(alone):
        hp = {k: float(v[s]) for k, v in hyper.get(name, {}).items()}
        one, one_stats = train(
            params, x, y, h0, c0, float(lrs[s]), None if clips is None else float(clips[s]), False, **hp
        )
        for k in one:
            assert identical(together[k][s], one[k]), (k, s)
        if one_stats is not None:
            assert [identical(np.asarray(a)[s], b) for a, b in zip(stats, one_stats, strict=True)] == [True] * 3


def test_a_population_refuses_a_clip_on_for_some_members_only():
    from lstm_exp.core import optim

    with pytest.raises(ValueError, match="on for every member or for none"):
        optim.build("sgd", 0.1, np.array([0.0, 1.0]), "norm", members=True)


class Recorder:
    """A logger that keeps what a run logs (its timing left out)."""

    def __init__(self):
        self.points, self.texts = [], []

    def log_metrics(self, metrics, step):
        self.points.append((step, {k: v for k, v in metrics.items() if k != "steps_per_sec"}))

    def log_text(self, text, name):
        self.texts.append((name, text))


def same_result(a, b) -> bool:
    fields = ("outcome", "steps", "first_loss", "final_loss", "best_loss", "final_eval", "skipped", "clipped_steps")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert identical(a.losses, b.losses) and identical(a.grad_norms, b.grad_norms) and a.samples == b.samples
    assert all(identical(a.params[k], b.params[k]) for k in b.params)
    assert (a.divergence is None) == (b.divergence is None)
    if a.divergence is not None:
        assert {k: v for k, v in a.divergence.items()} == b.divergence
    return True


@pytest.mark.parametrize(
    "experiment,varied",
    [
        (["experiment=case002_sin", "steps=150"], "seed"),  # H = 5; some seeds blow up without a clip
        (["experiment=case001_x2", "steps=60", "optim.clip=1"], "optim.lr"),
        (["experiment=case000_char", "steps=30", "task.sample_every=10", "task.sample_length=20"], "seed"),
        (["experiment=case001_x2", "steps=60", "nan.loss_ratio=0", "optim.lr=50"], "seed"),  # to NaN/inf
        pytest.param(
            ["task=sin", "steps=40", "optim=adam", "optim.clip=0.5", "optim.clip_mode=value"], "optim.b2", marks=SLOW
        ),
        pytest.param(
            ["task=sin", "steps=40", "optim=momentum", "optim.clip=0.01", "optim.clip_mode=state"],
            "optim.clip",
            marks=SLOW,
        ),
    ],
)
def test_a_member_of_a_population_runs_bit_for_bit_as_the_run_alone(make_cfg, tmp_path, experiment, varied):
    from lstm_exp.models.seam import build_model
    from lstm_exp.runner import train
    from lstm_exp.runner.checkpoint import load
    from lstm_exp.runner.population import Member, run_population

    values = {
        "seed": ["0", "1", "2", "3"],
        "optim.lr": ["0.01", "0.1", "1.0", "3.0"],
        "optim.b2": ["0.9", "0.99", "0.999", "0.5"],
        "optim.clip": ["0.001", "0.01", "0.1", "1.0"],
    }[varied]
    cfgs = [
        make_cfg(*experiment, f"{varied}={v}", "log_every=7", "checkpoint.every=13", "tracking.enabled=false")
        for v in values
    ]
    alone, members = [], []
    for k, cfg in enumerate(cfgs):
        for kind, into in (("alone", alone), ("member", members)):
            folder = tmp_path / kind / str(k)
            folder.mkdir(parents=True)
            into.append((cfg, Recorder(), folder))
    results = [train.run(cfg, log, run_dir=str(folder)) for cfg, log, folder in alone]
    tasks = [train.build_task(cfg) for cfg, _, _ in members]
    together = run_population(
        [
            Member(cfg, log, task, build_model(cfg, task), str(folder))
            for (cfg, log, folder), task in zip(members, tasks, strict=True)
        ]
    )
    for (_, one_log, one_dir), (_, log, folder), one, got in zip(alone, members, results, together, strict=True):
        assert same_result(got, one) and log.points == one_log.points and log.texts == one_log.texts
        assert (folder / "checkpoint.npz").exists() == (one_dir / "checkpoint.npz").exists()
        if not (one_dir / "checkpoint.npz").exists():  # diverged before its first checkpoint
            continue
        a, b = load(folder / "checkpoint.npz"), load(one_dir / "checkpoint.npz")
        assert a.step == b.step and a.counters == b.counters and identical(a.losses, b.losses)
        assert all(identical(a.params[k], b.params[k]) for k in b.params)
        assert a.opt_leaves.keys() == b.opt_leaves.keys()
        assert all(identical(a.opt_leaves[k], b.opt_leaves[k]) for k in b.opt_leaves)
    assert any(np.isfinite(r.final_loss) for r in results)
    if "nan.loss_ratio=0" in experiment:  # a member's non-finite tensor is named for it, as alone
        assert any(r.outcome == "diverged_nan" and r.divergence["where"] for r in together)
