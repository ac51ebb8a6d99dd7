"""Weight-initialisation schemes by name, for the fused LSTM weights and the output layer.

Each scheme draws one (fan_in, fan_out) matrix; fused gate blocks ``(n, 4H)`` are drawn gate by gate so
that a scheme means the same thing it means for four separate gate matrices:
- ``xavier``: N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio 2010), the default;
- ``normal``: N(0, std^2) with ``std`` from the config;
- ``randn``: N(0, 1), unscaled, as seed 001 does (``np.random.randn``);
- ``he``: N(0, 1) / sqrt(fan_in / 2), as seed 000 does; there the input and recurrent weights act on the
  concatenation [x, h], so their fan_in is D + H;
- ``orthogonal``: xavier input weights, each gate's recurrent block a random orthogonal matrix
  (Saxe et al. 2014).
Biases are zero (or N(0, 1) with ``bias=randn``, seed 000's choice) plus ``forget_bias`` on the forget
gate. The output layer follows the scheme unless ``output`` is ``ones`` (seed 001) or ``zeros``.
"""

from __future__ import annotations

import numpy as np

BIAS_INITS = ("zeros", "randn")
OUTPUT_INITS = ("scheme", "ones", "zeros")


def _xavier(shape, rng, fan_in, std):
    return rng.normal(0.0, np.sqrt(2.0 / (shape[0] + shape[1])), size=shape)


def _normal(shape, rng, fan_in, std):
    return rng.normal(0.0, std, size=shape)


def _randn(shape, rng, fan_in, std):
    return rng.standard_normal(size=shape)


def _he(shape, rng, fan_in, std):
    return rng.standard_normal(size=shape) / np.sqrt(fan_in / 2.0)


def _orthogonal(shape, rng, fan_in, std):
    q, r = np.linalg.qr(rng.standard_normal(size=(max(shape), min(shape))))
    q *= np.sign(np.diag(r))  # make the distribution uniform over orthogonal matrices
    return q if q.shape == tuple(shape) else q.T


SCHEMES = {"xavier": _xavier, "normal": _normal, "randn": _randn, "he": _he, "orthogonal": _orthogonal}


def scheme(name: str):
    """The matrix initialiser registered under ``name``."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown init scheme {name!r}; choose one of {', '.join(SCHEMES)}") from None


def _gate_blocks(draw, rows: int, H: int, rng, fan_in: int, std: float) -> np.ndarray:
    """A (rows, 4H) fused matrix drawn as four (rows, H) gate matrices, in gate order i, f, g, o."""
    return np.concatenate([draw((rows, H), rng, fan_in, std) for _ in range(4)], axis=1)


def init_params(
    shapes: dict,
    rng: np.random.Generator,
    name: str = "xavier",
    std: float = 0.1,
    bias: str = "zeros",
    forget_bias: float = 0.0,
    output: str = "scheme",
    dtype=np.float64,
) -> dict:
    """Draw every parameter of ``lstm_exp.core.network.param_shapes`` from one generator, in a fixed order.

    Inputs:
    - shapes: dict of Wx (D, 4H), Wh (H, 4H), b (4H,), Wy (H, K), by (K,)
    - rng: the run's generator (the only source of randomness)
    - name, std: the scheme and the std of ``normal``
    - bias: ``zeros`` or ``randn``; forget_bias: added to the forget gate's bias
    - output: ``scheme``, ``ones`` or ``zeros`` for Wy (by is zero unless bias=randn)
    """
    if bias not in BIAS_INITS:
        raise ValueError(f"unknown bias init {bias!r}; choose one of {', '.join(BIAS_INITS)}")
    if output not in OUTPUT_INITS:
        raise ValueError(f"unknown output init {output!r}; choose one of {', '.join(OUTPUT_INITS)}")
    draw = scheme(name)
    D, H = shapes["Wx"][0], shapes["Wh"][0]
    K = shapes["Wy"][1]
    fan_in = D + H if name == "he" else None  # seed 000: [x, h] concatenated
    recurrent = _orthogonal if name == "orthogonal" else draw
    input_draw = _xavier if name == "orthogonal" else draw
    params = {
        "Wx": _gate_blocks(input_draw, D, H, rng, fan_in or D, std),
        "Wh": _gate_blocks(recurrent, H, H, rng, fan_in or H, std),
        "b": rng.standard_normal(4 * H) if bias == "randn" else np.zeros(4 * H),
    }
    params["b"][H : 2 * H] += forget_bias
    if output == "scheme":
        params["Wy"] = input_draw((H, K), rng, H, std)
    else:
        params["Wy"] = np.ones((H, K)) if output == "ones" else np.zeros((H, K))
    params["by"] = rng.standard_normal(K) if bias == "randn" else np.zeros(K)
    return {k: v.astype(dtype) for k, v in params.items()}


def init_from_config(shapes: dict, rng: np.random.Generator, cfg, dtype=np.float64) -> dict:
    """init_params with the scheme, std, bias, forget bias and output init of an ``init`` config section."""
    return init_params(shapes, rng, cfg.scheme.name, cfg.std, cfg.bias.name, cfg.forget_bias, cfg.output.name, dtype)
