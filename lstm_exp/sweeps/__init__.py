"""Sweeps: many jobs, their parent run and the report over them.

What lives here: the Hydra callback that opens a sweep's parent run and writes its summary (``callback``), the
pool launcher's work (``launch``) and its processes (``pool``), the Optuna search (``search``) and the report
(``report``).
Who touches it: whoever changes how jobs are launched, counted or summarised.
What it may import: every folder below it (``runner`` included).
"""
