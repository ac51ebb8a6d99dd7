"""Runner: one Hydra job, from a composed config to a finished, recorded run.

What lives here: the job (``job``: validate, dispatch on ``mode``, open and end the run), the training loop
(``train``), the config schema (``schema``), checks before Hydra starts (``preflight``), what Hydra tells a job
(``context``), checkpoints and resuming (``checkpoint``, ``resume``), and ``mode=gradcheck|diagnose`` for a
composed config (``checks``).
Who touches it: whoever adds a setting, a mode or a metric.
What it may import: ``common``, ``core``, ``models``, ``tasks`` and ``tracking``.
"""
