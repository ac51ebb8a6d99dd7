"""Models: the seam between the training loop and the maths, and the comparison of any model with the core.

What lives here: the ``Model`` protocol and ``build_model`` (``seam``), a user's own LSTM behind the contract
(``user``), layouts that map a user's parameter names and shapes onto the core's (``layout``), and
``mode=diagnose``'s comparison with the core (``diagnose``).
Who touches it: whoever adds a kind of model or teaches diagnose a new finding.
What it may import: ``core`` and ``common``.
"""
