"""``hydra/launcher=pool``: every job of a sweep in a process of its own, ``n_jobs`` at a time.

A thin class, because Hydra instantiates only launchers defined under ``hydra_plugins``; what it does is in
``lstm_exp.sweeps.launch`` (jobs, and what a dead job leaves) and ``lstm_exp.sweeps.pool`` (processes and
signals). Hydra imports this module at every start, so it imports nothing heavy.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.lstm_exp_launcher.pool_launcher.PoolLauncher"
    n_jobs: int = -1  # jobs at a time; -1: one per core this process may use
    timeout: float | None = None  # seconds a job may run before it is killed and counted failed; null: no limit


ConfigStore.instance().store(group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="lstm_exp")


class PoolLauncher(Launcher):
    def __init__(self, n_jobs: int = -1, timeout: float | None = None) -> None:
        self.n_jobs, self.timeout = n_jobs, timeout
        self.config = self.task_function = self.hydra_context = None
        self.stopped_by = None  # the signal that stopped the sweep: later batches start nothing
        self.progress = None  # the sweep's console count, over all its batches (lstm_exp.sweeps.progress)
        self.compositions = None  # the jobs' configs, composed in their own processes (lstm_exp.sweeps.launch)

    def setup(self, *, hydra_context, task_function, config) -> None:
        from lstm_exp.sweeps.launch import LazyCompositions

        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
        self.compositions = LazyCompositions().install(hydra_context.config_loader)

    def launch(self, job_overrides, initial_job_idx):
        from lstm_exp.sweeps.launch import launch

        return launch(self, job_overrides, initial_job_idx)
