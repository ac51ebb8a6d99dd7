"""Common: the small pieces every layer leans on, and nothing of the domain.

What lives here: the one error path (``errors``: ``UserError``, ``complain``, ``warn``), files written whole or not
at all (``atomic``), signals held for a safe point (``signals``), who owns a run folder (``ownership``), when the
program started (``clock``) and matplotlib on a file-only backend (``figures``).
Who touches it: everyone. What it may import: the standard library and small third-party packages (psutil,
matplotlib on first use), never another folder of lstm_exp.
"""
