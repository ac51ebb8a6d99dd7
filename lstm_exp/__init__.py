"""lstm_exp: a bench for hand-written NumPy LSTMs: verified gradients, Hydra-composed experiments, MLflow records.

The public API is two functions, on the same code path as ``python -m lstm_exp`` (Hydra's compose API
underneath, so every override and its validation work the same; ``docs/own_lstm.md``):

    import lstm_exp
    d = lstm_exp.diagnose(MyLSTM(), layout="seed002", task="sin")       # -> Diagnosis; print(d) is the table
    r = lstm_exp.train(MyLSTM(), layout="seed002", task="sin", steps=300, optim__lr=0.01)  # -> Trained

The package's folders are its layers, bottom to top (each may import only those below it; ``tests/test_layers.py``
holds the rule): ``common`` < ``core`` < ``models``, ``tasks`` < ``tracking`` < ``runner`` < ``sweeps``.
"""

from lstm_exp.common import clock  # noqa: F401  (first: it marks when the program started)

__all__ = ["diagnose", "train"]


def diagnose(model, layout=None, task="sin", **settings):
    """Check ``model`` (an object or class keeping the model contract, a ``"file.py:Name"`` spec, or None for the
    core) against the core on ``task`` through ``layout`` (a preset's name or a YAML file's path): a Diagnosis with
    the verdict, findings, matched mistakes and one row per tensor. ``settings`` are overrides (``seed=3``,
    ``model__fault="no_c_carry"``). Raises ``lstm_exp.common.errors.UserError`` for bad input."""
    from lstm_exp.runner import api  # on first use: importing the package stays cheap for python -m lstm_exp

    return api.diagnose(model, layout, task, **settings)


def train(model=None, layout=None, task="sin", **settings):
    """Train ``model`` (None: the core) on ``task`` as ``python -m lstm_exp`` would, tracked in MLflow if the config
    says so (``tracking__enabled=False`` to turn it off): a Trained with the outcome, the summary figures and the
    per-step history as a pandas DataFrame."""
    from lstm_exp.runner import api

    return api.train(model, layout, task, **settings)
