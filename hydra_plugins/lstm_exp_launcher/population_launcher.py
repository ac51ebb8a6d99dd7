"""``hydra/launcher=population``: a seed sweep of a small model trained as populations, many jobs as one
computation. A thin class, because Hydra instantiates only launchers defined under ``hydra_plugins``; what it does is
in ``lstm_exp.sweeps.population_launch``. Hydra imports this module at every start, so it imports nothing heavy.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from hydra_plugins.lstm_exp_launcher.pool_launcher import PoolLauncher


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.lstm_exp_launcher.population_launcher.PopulationLauncher"
    n_jobs: int = -1  # processes at a time (populations, or jobs that run alone); -1: one per core
    timeout: float | None = None  # seconds a process may run before it is killed and its jobs counted failed
    memory_gb: float | None = None  # memory one population may use; null: the free memory shared by n_jobs
    max_members: int | None = None  # at most this many jobs in one population; null: as many as fit


ConfigStore.instance().store(
    group="hydra/launcher", name="population", node=PopulationLauncherConf, provider="lstm_exp"
)


class PopulationLauncher(PoolLauncher):
    def __init__(self, n_jobs=-1, timeout=None, memory_gb=None, max_members=None) -> None:
        super().__init__(n_jobs, timeout)
        self.memory_gb, self.max_members = memory_gb, max_members

    def launch(self, job_overrides, initial_job_idx):
        from lstm_exp.sweeps.population_launch import launch

        return launch(self, job_overrides, initial_job_idx)
