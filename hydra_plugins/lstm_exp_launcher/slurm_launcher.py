"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): Hydra's submitit Slurm launcher, whose jobs always
return.

submitit learns a job's result from a file the job's process writes as it returns. An lstm_exp job stopped by
``scancel`` (SIGTERM: it checkpoints, ends its MLflow run KILLED and leaves ``job_status.json``) exits with
status 130 instead, so it writes none, and Hydra's launcher then raises ``UncompletedJobError`` for the whole
sweep: no summary, the parent run left RUNNING. Here that exit becomes a return of None (the job has already
recorded itself), so the sweep ends with its summary, counting the job as killed. A job killed outright
(SIGKILL, out of memory) still leaves no result: the sweep stops with submitit's error, and
``python -m lstm_exp.report --fix-stale`` ends the runs it left RUNNING.
"""

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:  # the slurm extra is not installed
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:
    from hydra.core.utils import JobReturn, JobStatus

    class SlurmLauncher(SubmititSlurmLauncher):
        def __call__(self, sweep_overrides, *args, **kwargs):
            try:
                return super().__call__(sweep_overrides, *args, **kwargs)
            except (SystemExit, KeyboardInterrupt):  # stopped by a signal after recording itself (module doc)
                return JobReturn(overrides=list(sweep_overrides), status=JobStatus.COMPLETED, _return_value=None)
