"""``python -m lstm_exp [overrides]``: the Hydra entry point. See conf/config.yaml for every setting.

What runs, in order, for one job:

1. ``lstm_exp.runner.schema.register()`` (below) stores the structured configs, so Hydra validates the composed
   config (a misspelt key or a wrong type fails at composition); ``preflight.composition_error`` composes
   the command line once first, so such a failure is one ``error:`` line with exit 2;
2. hooks wired only through config, in ``conf/config.yaml`` under ``hydra.callbacks``:
   ``lstm_exp.runner.preflight.OutputDirCheck`` refuses an output folder that cannot be written, before Hydra
   creates it; ``lstm_exp.sweeps.callback.SweepCallback`` opens a sweep's MLflow parent run before the first job and
   writes the summary and the report after the last;
3. ``lstm_exp.runner.job.run_job(cfg)``: validate once, then ``mode=train`` (``lstm_exp.runner.train.run`` in an MLflow
   run), ``mode=gradcheck`` or ``mode=diagnose`` (``lstm_exp.runner.checks``). It returns the metric a sweeper
   minimises.

Before any of that, the first statement forks the tracking agent (``lstm_exp.tracking.agent``) for a command line that
may train a tracked single run, so MLflow's import overlaps with Hydra's.
"""

import sys

from lstm_exp.tracking import agent

if __name__ == "__main__":
    agent.start(sys.argv[1:])

import hydra  # noqa: E402

from lstm_exp.common.errors import UserError, refuse  # noqa: E402
from lstm_exp.common.signals import EXIT_INTERRUPTED  # noqa: E402
from lstm_exp.runner import layout_files  # noqa: E402
from lstm_exp.runner.job import run_job  # noqa: E402
from lstm_exp.runner.preflight import composition_error, expand_home  # noqa: E402
from lstm_exp.runner.schema import register  # noqa: E402
from lstm_exp.sweeps.continuation import continue_argv  # noqa: E402

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg):
    return run_job(cfg)


if __name__ == "__main__":
    try:
        sys.argv[1:] = expand_home(sys.argv[1:])  # task.corpus=~/books/alice.txt: the path it names, as a shell would
        sys.argv[1:] = layout_files.resolve(sys.argv[1:])  # layout=path/to/file.yaml: stored, then chosen by name
        sys.argv[1:] = continue_argv(sys.argv[1:]) or sys.argv[1:]  # resume=<sweep folder>: the sweep, finished
    except UserError as e:
        refuse(str(e))
    problem = composition_error(sys.argv[1:])  # Hydra's own message would be several lines, exit 1
    if problem:
        refuse(problem)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside training (which checkpoints and says how to resume)
        print("interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
