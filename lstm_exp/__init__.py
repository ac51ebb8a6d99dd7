"""lstm_exp: a bench for hand-written NumPy LSTMs: verified gradients, Hydra-composed experiments, MLflow records.

The package's folders are its layers, bottom to top (each may import only those below it; ``tests/test_layers``
holds the rule): ``common`` < ``core`` < ``models`` < ``tracking`` < ``runner`` < ``sweeps``.
"""

from lstm_exp.common import clock  # noqa: F401  (first: it marks when the program started)
