"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): Hydra's submitit Slurm launcher, whose jobs always
return.

submitit learns a job's result from a file the job's process writes as it returns. An lstm_exp job stopped by
``scancel`` (SIGTERM: it checkpoints, ends its MLflow run KILLED and leaves ``job_status.json``) exits with
status 130 instead, so it writes none, and Hydra's launcher then raises ``UncompletedJobError`` for the whole
sweep: no summary, the parent run left RUNNING. Here that exit becomes a return of None (the job has already
recorded itself), so the sweep ends with its summary, counting the job as killed. A job killed outright
(SIGKILL, out of memory) leaves no result at all, and submitit raises for the whole batch: then every job's result
is read from its own folder instead (``lstm_exp.sweeps.launch.collect``), the killed one recorded FAILED with the
cause, and the sweep goes on to its summary.
"""

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:  # the slurm extra is not installed
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:
    from hydra.core.utils import JobReturn, JobStatus

    class SlurmLauncher(SubmititSlurmLauncher):
        def launch(self, job_overrides, initial_job_idx):
            try:
                return super().launch(job_overrides, initial_job_idx)
            except Exception as e:  # a job that left no result (module doc): each job's own record instead
                from lstm_exp.sweeps.launch import collect

                return collect(self, job_overrides, initial_job_idx, f"its Slurm job ended without a result ({e})")

        def __call__(self, sweep_overrides, *args, **kwargs):
            try:
                return super().__call__(sweep_overrides, *args, **kwargs)
            except (SystemExit, KeyboardInterrupt):  # stopped by a signal after recording itself (module doc)
                return JobReturn(overrides=list(sweep_overrides), status=JobStatus.COMPLETED, _return_value=None)
