"""A user's own hand-written LSTM as a model: ``model.impl=<file.py>:<Name>`` or ``<module>:<Name>``.

The contract (docs/own_lstm.md): ``<Name>`` is a class instantiated with no arguments (or a
module-level object) with

- ``loss_and_grads(params, x, y, h0, c0) -> (loss, grads, (hT, cT))``, unbatched and time-major:
  ``x`` (T, D) float64 or (T,) int64 token ids, ``y`` (T, K) float64 or (T,) int64, ``h0, c0`` (H,);
  ``grads`` has exactly the keys of ``params`` (the user's own names and shapes), plus optionally
  ``"h0"``/``"c0"``; ``loss`` is in the user's own convention;
- optionally ``init_params(rng, input_dim, hidden, output_dim) -> dict``;
- optionally ``batched = True``: then ``loss_and_grads`` takes the batch whole, ``x`` (B, T, D) or (B, T), ``y``
  (B, T, K) or (B, T), ``h0, c0`` (B, H), and returns the batch-mean loss and gradients, ``"h0"``/``"c0"`` of shape
  (B, H) and the final state as two (B, H) arrays.

Without ``batched``, a batch of B sequences is fed one sequence at a time; the loss, the gradients and any
returned dL/dh0, dL/dc0 are averaged over the B sequences (under both ``task.reduction`` settings, as the core
averages over the batch under both: how a user's code reduces over *time* is its own convention, which
``mode=diagnose`` reports). Everything the user's code gets wrong at load time is a UserError naming
their file and line; what it gets wrong during training is their bug, and the run records it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstm_exp.common.errors import UserError, complain, first_line
from lstm_exp.core.forensics import trace_black_box
from lstm_exp.core.init import init_from_config
from lstm_exp.core.network import StepOptions, StepResult, param_shapes
from lstm_exp.models.layout import Layout, LayoutError, check_fits, from_config, from_fused, to_fused

STATE_GRADS = ("h0", "c0")
EXIT_FORKED = 70  # the exit status of a process the user's code forked and that returned into lstm_exp


def read_only(array) -> np.ndarray:
    """A view of ``array`` that cannot be written through (the array itself stays writable for its owner)."""
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


class ContractError(UserError):
    """The user's implementation does not keep the model.impl contract."""


def _where(error: BaseException, path: Path | None) -> str:
    """'my_lstm.py:12' for the deepest traceback frame in the user's file (or outside lstm_exp), else ''."""
    frames = traceback.extract_tb(error.__traceback__)
    own = Path(__file__).resolve().parents[1]  # the lstm_exp package
    mine = [
        f
        for f in frames
        if (path is not None and Path(f.filename).resolve() == path)
        or (path is None and own not in Path(f.filename).resolve().parents)
    ]
    if isinstance(error, SyntaxError) and error.filename:
        return f"{Path(error.filename).name}:{error.lineno}"
    return f"{Path(mine[-1].filename).name}:{mine[-1].lineno}" if mine else ""


def raised_in_user_code(what: str, error: BaseException, path: Path | None, params=None) -> ContractError:
    """The user's code raised: one line with the error and the user's file and line. A KeyError for a parameter
    name the dict does not hold says which names it does hold (the layout's, or their init_params')."""
    where = _where(error, path)
    first = str(error).splitlines()[0] if str(error) else ""
    at = f" (at {where})" if where else ""
    hint = ""
    if isinstance(error, KeyError) and params is not None and error.args and error.args[0] not in params:
        hint = f": it reads params[{error.args[0]!r}], and the params it was given have {', '.join(map(str, params))}"
    return ContractError(f"model.impl: {what} raised {type(error).__name__}: {first}{at}{hint}")


def _import(source: str) -> tuple[object, Path | None]:
    """The module named by the part of model.impl before ':' (a .py file or an importable module)."""
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise ContractError(f"model.impl: no such file '{source}' (give <file.py>:<Name> or <module>:<Name>)")
        spec = importlib.util.spec_from_file_location(f"lstm_exp_user.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling-free introspection look modules up here
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(spec.name, None)
            raise raised_in_user_code(f"importing {source}", e, path) from None
        return module, path
    try:
        module = importlib.import_module(source)
    except ModuleNotFoundError as e:
        if e.name and source.startswith(e.name):
            raise ContractError(
                f"model.impl: no module named '{source}' (is it installed, or did you mean a .py file?)"
            ) from None
        raise raised_in_user_code(f"importing {source}", e, None) from None
    except Exception as e:
        raise raised_in_user_code(f"importing {source}", e, None) from None
    file = getattr(module, "__file__", None)
    return module, Path(file).resolve() if file else None


def _takes(method, args: int) -> bool:
    try:
        inspect.signature(method).bind(*range(args))
        return True
    except TypeError:
        return False


OBJECTS: dict[str, object] = {}  # models handed over in Python (lstm_exp.diagnose / train): model.impl=object:<key>
OBJECT = "object"


def register_object(obj) -> str:
    """The ``model.impl`` spec of a model object handed over in Python (a class or an instance): ``object:<name>``."""
    name = obj.__name__ if inspect.isclass(obj) else type(obj).__name__
    key, n = name, 2
    while OBJECTS.get(key, obj) is not obj:
        key, n = f"{name}_{n}", n + 1
    OBJECTS[key] = obj
    return f"{OBJECT}:{key}"


def _source_file(obj) -> Path | None:
    try:
        file = inspect.getsourcefile(obj if inspect.isclass(obj) else type(obj))
    except TypeError:
        return None
    return Path(file).resolve() if file else None


def load(spec: str) -> tuple[object, str, Path | None]:
    """The user's implementation object named by ``spec``, its name and its file; ContractError if it cannot be."""
    source, _, name = spec.rpartition(":")
    if not source or not name:
        raise ContractError(f"model.impl={spec}: give <file.py>:<Name> or <module>:<Name>")
    if source == OBJECT:
        obj = OBJECTS.get(name)
        if obj is None:
            raise ContractError(f"model.impl={spec}: no model object of that name was handed over in this process")
        return _checked(obj, obj.__name__ if inspect.isclass(obj) else type(obj).__name__, _source_file(obj))
    module, path = _import(source)
    if not hasattr(module, name):
        defined = sorted(
            k
            for k, v in vars(module).items()
            if not k.startswith("_") and inspect.isclass(v) and getattr(v, "__module__", None) == module.__name__
        )
        raise ContractError(f"model.impl: {source} has no '{name}' (it defines: {', '.join(defined) or 'no classes'})")
    return _checked(getattr(module, name), name, path)


def _checked(obj, name: str, path: Path | None) -> tuple[object, str, Path | None]:
    """The implementation (a class is instantiated with no arguments) after checking its methods' signatures."""
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as e:
            raise raised_in_user_code(f"{name}()", e, path) from None
    method = getattr(obj, "loss_and_grads", None)
    if not callable(method):
        raise ContractError(f"model.impl: {name} has no loss_and_grads(params, x, y, h0, c0) method")
    if not _takes(method, 5):
        raise ContractError(
            f"model.impl: {name}.loss_and_grads must take (params, x, y, h0, c0); it takes {inspect.signature(method)}"
        )
    init = getattr(obj, "init_params", None)
    if init is not None and not _takes(init, 4):
        raise ContractError(
            f"model.impl: {name}.init_params must take (rng, input_dim, hidden, output_dim); "
            f"it takes {inspect.signature(init)}"
        )
    return obj, name, path


def _shape(value) -> tuple:
    return tuple(np.shape(value))


def check_result(result, params: dict, H: int, name: str, B: int | None = None) -> tuple[float, dict, tuple]:
    """The (loss, grads, (hT, cT)) a call returned, after checking its structure; ContractError otherwise.

    ``B``: a batched model's batch size (its state and state gradients are (B, H)); None for one sequence.
    """
    where = f"model.impl: {name}.loss_and_grads"
    state_shape = (H,) if B is None else (B, H)
    n_state = H if B is None else B * H
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise ContractError(
            f"{where} must return (loss, grads, (hT, cT)); it returned {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple | list) else "")
        )
    loss, grads, state = result
    if np.size(loss) != 1 or not np.isrealobj(loss):
        raise ContractError(f"{where} must return a real scalar loss; it returned shape {_shape(loss)}")
    if not isinstance(grads, dict):
        raise ContractError(f"{where} must return the gradients as a dict; it returned {type(grads).__name__}")
    missing = [k for k in params if k not in grads]
    extra = [k for k in grads if k not in params and k not in STATE_GRADS]
    if missing or extra:
        parts = ([f"missing {', '.join(map(str, missing))}"] if missing else []) + (
            [f"extra {', '.join(map(str, extra))}"] if extra else []
        )
        raise ContractError(
            f"{where}: grads must have exactly the keys of params (plus optional h0, c0); " + "; ".join(parts)
        )
    for k, g in grads.items():
        want = _shape(params[k]) if k in params else state_shape
        if _shape(g) != want and not (k in STATE_GRADS and np.size(g) == n_state):
            raise ContractError(f"{where}: grads['{k}'] has shape {_shape(g)}, the parameter has shape {want}")
    if not isinstance(state, tuple | list) or len(state) != 2 or any(np.size(s) != n_state for s in state):
        raise ContractError(f"{where} must return the final state as (hT, cT), each of shape {state_shape}")

    def as_float64(key, value):  # dL/dh0, dL/dc0 may come as column vectors: flatten them to (H,) or (B, H)
        return np.asarray(value, dtype=np.float64).reshape(_shape(params[key]) if key in params else state_shape)

    grads = {k: as_float64(k, g) for k, g in grads.items()}
    state = tuple(np.asarray(s, dtype=np.float64).reshape(state_shape) for s in state)
    return float(np.asarray(loss).reshape(())), grads, state


@dataclass
class UserModel:
    """A user's implementation seen through the model seam (see the module docstring)."""

    impl: object
    label: str
    path: Path | None
    options: StepOptions
    dims: tuple  # (D, H, K)
    layout: Layout | None
    init: object  # the ``init`` config section, used when the user has no init_params

    @property
    def hidden(self) -> int:
        return self.dims[1]

    @property
    def batched(self) -> bool:
        """Whether the user's code takes the batch whole (``batched = True``) rather than one sequence."""
        return getattr(self.impl, "batched", False) is True

    def init_params(self, rng: np.random.Generator) -> dict:
        D, H, K = self.dims
        if hasattr(self.impl, "init_params"):
            try:
                params = self.impl.init_params(rng, D, H, K)
            except Exception as e:
                raise raised_in_user_code(f"{self.label}.init_params", e, self.path) from None
            if not isinstance(params, dict):
                raise ContractError(f"model.impl: {self.label}.init_params must return a dict of arrays")
            params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
            if self.layout is not None:
                check_fits(params, self.layout, D, H, K, what=f"params of {self.label}.init_params")
            return params
        if self.layout is None:
            raise ContractError(
                f"model.impl: {self.label} has no init_params, so the tool needs layout=<name> "
                "(conf/layout/) to initialise its parameters"
            )
        return from_fused(init_from_config(param_shapes(D, H, K), rng, self.init), self.layout, D, H, K)

    def invoke(self, params: dict, *data):
        """The user's ``loss_and_grads`` on read-only views of ``params`` (it must not change them) and copies of the
        data. Code that writes into its params is told so in one line; a process it forked that returns into lstm_exp
        (it would train on beside this one, writing every point twice) is ended at once."""
        pid = os.getpid()
        frozen = {k: read_only(v) for k, v in params.items()}
        try:
            return self.impl.loss_and_grads(frozen, *(np.array(a) for a in data))
        except ValueError as e:
            if "read-only" not in str(e):
                raise
            raise ContractError(
                f"model.impl: {self.label}.loss_and_grads writes into its params ({first_line(e)}"
                f"{', at ' + _where(e, self.path) if _where(e, self.path) else ''}): copy what it changes"
            ) from None
        finally:
            if os.getpid() != pid:  # a child the user's code forked, returning here
                complain(f"model.impl: {self.label}.loss_and_grads forked a process that returned into lstm_exp; ended")
                os._exit(EXIT_FORKED)

    def _batch(self, params: dict, x, y, h0, c0) -> tuple[float, dict, tuple]:
        """One call of a batched model on the whole batch."""
        result = self.invoke(params, x, y, np.asarray(h0, dtype=np.float64), np.asarray(c0, dtype=np.float64))
        return check_result(result, params, self.hidden, self.label, B=len(x))

    def call(self, params: dict, x, y, h0, c0) -> tuple[float, dict, tuple]:
        """The user's (loss, grads, (hT, cT)) for one sequence, checked against the contract."""
        if self.batched:
            loss, grads, state = self._batch(params, x[None], y[None], h0[None], c0[None])
            return loss, {k: g[0] if k in STATE_GRADS else g for k, g in grads.items()}, (state[0][0], state[1][0])
        return check_result(self.invoke(params, x, y, h0, c0), params, self.hidden, self.label)

    def sequences(self, params: dict, x, y, h0, c0):
        """The user's (loss, grads, state) for each of the B sequences, lazily (copies: their code may write)."""
        for b in range(len(x)):
            yield self.call(
                params,
                np.array(x[b]),
                np.array(y[b]),
                np.array(h0[b], dtype=np.float64),
                np.array(c0[b], dtype=np.float64),
            )

    def step(self, params: dict, x, y, h0, c0) -> StepResult:
        if self.batched:
            loss, grads, state = self._batch(params, x, y, h0, c0)
            dstate = tuple(grads.get(k) for k in STATE_GRADS)
            return StepResult(loss, {k: g for k, g in grads.items() if k not in STATE_GRADS}, state, dstate, None, None)
        results = list(self.sequences(params, x, y, h0, c0))
        B = len(results)
        loss = sum(r[0] for r in results) / B
        grads = {k: sum(r[1][k] for r in results) / B for k in results[0][1] if k not in STATE_GRADS}
        state = tuple(np.stack([r[2][j] for r in results]) for j in (0, 1))
        # dL/dh0 of the batch-averaged loss: each sequence's own, over B (None where the code does not say)
        dstate = tuple(np.stack([r[1][k] for r in results]) / B if k in results[0][1] else None for k in STATE_GRADS)
        return StepResult(loss, grads, state, dstate, None, None)

    def loss(self, params: dict, x, y, h0, c0) -> float:
        if self.batched:
            return self._batch(params, x, y, h0, c0)[0]
        return float(np.mean([r[0] for r in self.sequences(params, x, y, h0, c0)]))

    def trace(self, params: dict, x, y, h0, c0) -> dict | None:
        results = [self._batch(params, x, y, h0, c0)] if self.batched else self.sequences(params, x, y, h0, c0)
        return trace_black_box(params, h0, c0, results)

    def health(self, result: StepResult) -> dict:
        return {}  # max |c| and gate saturation need the model's internals

    def fused(self, params: dict) -> dict | None:
        return None if self.layout is None else to_fused(params, self.layout, *self.dims)

    def probe(self, params: dict, batch) -> None:
        """Run the user's code once on the first sequence at the initial weights; ContractError if it breaks."""
        H = self.hidden
        h0 = np.zeros(H)
        try:
            loss, _, _ = self.call(params, np.array(batch.x[0]), np.array(batch.y[0]), h0, h0.copy())
        except ContractError:
            raise
        except Exception as e:
            raise raised_in_user_code(f"{self.label}.loss_and_grads", e, self.path, params) from None
        if not np.isfinite(loss):
            raise ContractError(
                f"model.impl: {self.label}.loss_and_grads returned a non-finite loss ({loss}) at the initial weights"
            )


def user_model(cfg, options: StepOptions, dims: tuple) -> UserModel:
    """Load ``cfg.model.impl`` and wrap it for (D, H, K) = ``dims``; its layout (if any) is checked when parameters
    exist."""
    impl, name, path = load(cfg.model.impl)
    try:
        layout = from_config(cfg.layout) if cfg.layout is not None else None
    except LayoutError as e:
        raise UserError(str(e)) from None
    return UserModel(impl, name, path, options, dims, layout, cfg.init)
