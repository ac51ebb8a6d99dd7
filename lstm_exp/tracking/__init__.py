"""Tracking: everything MLflow. Nothing here knows the training loop.

What lives here: the store and its URIs, the tracked run and its lifecycle (``run``), the forked tracking agent
(``agent``), the offline spool and its upload (``spool``, ``sync``), the blank SQLite store copied for a new
store (``blank_store``), dataset records (``dataset``) and run names (``run_names``).
Who touches it: whoever changes what a run records or how it reaches the store.
What it may import: ``common``, ``core`` and ``tasks`` (a dataset's description).
"""
