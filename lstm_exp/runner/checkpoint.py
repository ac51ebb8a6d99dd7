"""Checkpoints: everything a run needs to continue bit for bit, in one ``.npz`` written atomically.

Contents: the parameters, the optimizer state (its NamedTuple/tuple/dict tree flattened to
``opt/<path>`` keys and rebuilt against the optimizer's own ``init`` as a template), the generator's
state (as JSON text), the carried LSTM state, the step, the per-step loss and gradient-norm history,
counters, and the MLflow run id. No pickle anywhere: arrays, numbers and strings only, loaded with
``allow_pickle=False``. The file is written to a temporary name and renamed, so a crash mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lstm_exp.common.atomic import atomic_write

FILENAME = "checkpoint.npz"
FORMAT = "lstm_exp-checkpoint-1"


class Checkpoint(NamedTuple):
    step: int  # the last completed step
    params: dict
    opt_leaves: dict  # flattened optimizer state: "opt/<path>" -> array
    rng_state: dict  # np.random.Generator.bit_generator.state
    state: tuple | None  # carried (h, c), or None when the next batch starts fresh
    losses: np.ndarray
    grad_norms: np.ndarray
    counters: dict  # skipped, clipped_steps, ...
    run_id: str | None
    store: str | None = None  # the tracking store the run wrote to (its password masked), for resume= elsewhere


def flatten_tree(tree, prefix: str = "opt") -> dict:
    """Leaves of a NamedTuple/tuple/dict tree, keyed by their path."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, tuple):
        items = zip(getattr(tree, "_fields", range(len(tree))), tree, strict=True)
    else:
        return {prefix: np.asarray(tree)}
    out = {}
    for key, value in items:
        out.update(flatten_tree(value, f"{prefix}/{key}"))
    return out


def unflatten_tree(template, leaves: dict, prefix: str = "opt"):
    """Rebuild ``template``'s structure with the leaves saved by flatten_tree (scalars keep their type)."""
    if isinstance(template, dict):
        return {k: unflatten_tree(v, leaves, f"{prefix}/{k}") for k, v in template.items()}
    if isinstance(template, tuple):
        names = getattr(template, "_fields", range(len(template)))
        parts = [unflatten_tree(v, leaves, f"{prefix}/{k}") for k, v in zip(names, template, strict=True)]
        return type(template)(*parts) if hasattr(template, "_fields") else tuple(parts)
    if prefix not in leaves:  # a leaf older checkpoints did not have (a clip's record of its last step)
        return template
    value = leaves[prefix]
    return type(template)(value.item()) if np.isscalar(template) else value.copy()


def save(run_dir, ckpt: Checkpoint) -> Path:
    """Write ``run_dir/checkpoint.npz`` atomically; returns its path."""
    path = Path(run_dir) / FILENAME
    arrays = {f"param/{k}": v for k, v in ckpt.params.items()}
    arrays.update(ckpt.opt_leaves)
    if ckpt.state is not None:
        arrays["state/h"], arrays["state/c"] = ckpt.state
    meta = {
        "format": FORMAT,
        "step": ckpt.step,
        "rng": ckpt.rng_state,
        "counters": ckpt.counters,
        "run_id": ckpt.run_id,
        "store": ckpt.store,
    }
    arrays.update(losses=ckpt.losses, grad_norms=ckpt.grad_norms, meta=np.array(json.dumps(meta)))
    return atomic_write(path, write=lambda f: np.savez(f, **arrays))


def load(path) -> Checkpoint:
    """Read a checkpoint written by ``save``; ValueError if the file is not one of ours."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated or corrupted on disk
        raise ValueError(f"'{path}' is damaged or not a checkpoint ({type(e).__name__})") from None
    meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not an lstm_exp checkpoint")
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}
    opt = {k: v for k, v in arrays.items() if k.startswith("opt")}
    state = (arrays["state/h"], arrays["state/c"]) if "state/h" in arrays else None
    return Checkpoint(
        meta["step"],
        params,
        opt,
        meta["rng"],
        state,
        arrays["losses"],
        arrays["grad_norms"],
        meta["counters"],
        meta.get("run_id"),
        meta.get("store"),
    )
