"""The core: the maths, in NumPy only. This is the reference every other model is compared with.

What lives here: the LSTM layer and its hand-written BPTT (``lstm``), the output head and losses (``heads``), the
network that chains them (``network``), weight initialisation (``init``), optimizers and clipping (``optim``),
the numerical gradient check (``gradcheck``), the catalogue of classic backward mistakes (``faults``), divergence
forensics (``forensics``) and cheap health measures (``health``).
Who touches it: anyone changing the maths; every change here comes with a passing gradient check.
What it may import: NumPy and the standard library; nothing else of lstm_exp, not even ``common``.
"""
