"""``hydra/sweeper=search``: an Optuna (>= 4) search on Optuna's ask-and-tell interface, with a study that persists.

Why our own (small) sweeper: Hydra's optuna sweeper 1.2 pins ``optuna<3`` (2.10 from 2021) and its SQLite
storage fails under SQLAlchemy 2, so no study could be resumed or opened in optuna-dashboard; its 1.4 release
candidates pull a pre-release Hydra and OmegaConf into every install.

The study lives in a database that a second invocation continues: by default ``optuna.db`` beside a SQLite
tracking store (for a database store, the same database; for a tracking server, ``optuna.db`` in the launch
folder). ``n_trials`` is the size of the study: an invocation runs the trials still missing (a trial that
ran — finished or failed — counts, and so does one left RUNNING by an invocation killed outright, which is
failed; one never started because the sweep was stopped is failed and does not count). Trials are asked
``n_jobs`` at a time and run through the configured launcher, each an MLflow child run of the sweep; a job
that diverged or failed returns None and its trial is told FAIL — never a NaN objective.

Search space (``params``): Hydra's sweep syntax, ``choice(a, b)``, ``interval(lo, hi)``,
``tag(log, interval(lo, hi))``, ``range(a, b)``; a plain value is passed to every trial.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from lstm_exp.tracking.store import resolve_uri, sqlite_file

# Optuna is an optional extra: it is imported only when a search runs, and its absence is one line.

log = logging.getLogger(__name__)
STUDY_FILE = "optuna.db"


def distributions(params: dict) -> tuple[dict, list[str]]:
    """Optuna distributions for the swept params, and the fixed ``key=value`` overrides."""
    import optuna

    parser = OverridesParser.create()
    space, fixed = {}, []
    for key, text in params.items():
        (override,) = parser.parse_overrides([f"{key}={text}"])
        if not override.is_sweep_override():
            fixed.append(f"{key}={text}")
        elif override.is_interval_sweep():
            sweep = override.value()
            space[key] = optuna.distributions.FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
        else:  # choice(...) or range(...): the values as the override spells them
            space[key] = optuna.distributions.CategoricalDistribution(list(override.sweep_string_iterator()))
    return space, fixed


def storage_uri(storage: str | None, tracking_uri: str | None) -> str:
    """The study's database (module doc)."""

    if storage:
        return storage
    tracking = resolve_uri(tracking_uri)
    store = sqlite_file(tracking)
    if store is not None:
        return f"sqlite:///{store.parent.resolve() / STUDY_FILE}"
    if tracking.startswith(("postgresql", "mysql")):
        return tracking
    return f"sqlite:///{Path.cwd() / STUDY_FILE}"


def load_study(sweeper_cfg, tracking_uri: str | None, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study opened
    return optuna.create_study(
        study_name=sweeper_cfg.study_name,
        storage=storage_uri(sweeper_cfg.storage, tracking_uri),
        direction=sweeper_cfg.direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )


def counts(trial) -> bool:
    """Whether a trial counts towards ``n_trials``: it ran (finished, or failed after it ran)."""
    import optuna

    state = trial.state
    return state == optuna.trial.TrialState.COMPLETE or (
        state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get("not_run")
    )


def remaining(study, n_trials: int) -> int:
    return max(0, n_trials - sum(counts(t) for t in study.get_trials(deepcopy=False)))


def remaining_trials(config) -> int:
    """How many trials this invocation will run (for the sweep's planned-jobs count)."""
    s = config.hydra.sweeper
    return remaining(load_study(s, config.tracking.uri, s.seed), s.n_trials)


def fail_orphans(study) -> None:
    """Trials left RUNNING by an invocation that died (killed outright): failed trials, as their jobs are."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def run_search(sweeper, arguments: list[str]) -> None:
    """Ask, launch, tell, until the study has ``n_trials`` trials that ran, or the launcher was stopped."""
    import optuna

    s = sweeper.config.hydra.sweeper
    study = load_study(s, sweeper.config.tracking.uri, s.seed)
    fail_orphans(study)
    space, fixed = distributions(dict(s.params or {}))
    fixed_args = [*arguments, *fixed]
    todo, job = remaining(study, s.n_trials), 0
    log.info(f"study '{s.study_name}' in {storage_uri(s.storage, sweeper.config.tracking.uri)}: {todo} trials to run")
    while todo > 0:
        trials = [study.ask(space) for _ in range(min(max(1, s.n_jobs), todo))]
        batch = [[*fixed_args, *(f"{k}={v}" for k, v in t.params.items())] for t in trials]
        returns = sweeper.launcher.launch(batch, initial_job_idx=job)
        for trial, ret in zip(trials, returns, strict=False):
            value = ret.return_value
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(value))
        for trial in trials[len(returns) :]:  # never started: the sweep was stopped
            trial.set_user_attr("not_run", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        job += len(returns)
        todo -= len(returns)
        if len(returns) < len(trials) or getattr(sweeper.launcher, "stopped_by", None):
            break
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if done:
        best = study.best_trial
        print(f"search: best value {best.value:.6g} (trial {best.number}) with {best.params}")
