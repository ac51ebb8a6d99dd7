"""``hydra/sweeper=search``: an Optuna search whose study persists and resumes (the work is in lstm_exp.sweeps.search).

A thin class, because Hydra instantiates only sweepers defined under ``hydra_plugins``; Hydra imports this
module at every start, so it imports nothing heavy.
"""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.lstm_exp_launcher.search_sweeper.SearchSweeper"
    direction: str = "minimize"
    study_name: str = "lstm_exp"
    storage: str | None = None  # null: optuna.db beside the tracking store (see lstm_exp.sweeps.search)
    n_trials: int = 20  # the study's size: a later invocation runs the trials still missing
    n_jobs: int = 2  # trials asked and launched at a time
    seed: int = 0  # the TPE sampler's
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="search", node=SearchSweeperConf, provider="lstm_exp")


class SearchSweeper(Sweeper):
    def __init__(self, **settings) -> None:
        self.settings = settings
        self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments):
        from lstm_exp.sweeps.search import run_search

        return run_search(self, list(arguments))
