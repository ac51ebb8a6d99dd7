"""``python -m lstm_exp [overrides]``: the Hydra entry point. See conf/config.yaml for every setting."""

import hydra

from lstm_exp.job import run_job
from lstm_exp.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg):
    return run_job(cfg)


if __name__ == "__main__":
    main()
