"""Why the seed-001 blog LSTM (fit y = x^2) goes NaN: both readings.

The blog's section "7. 完整代码" was flattened onto one line, so its indentation is lost. Everything below is
its code, transcribed statement by statement (class/variable names, the length-101 ``Fgate_data`` /
``gradc_data`` / ``gradh_data`` index arithmetic, the two special-cased ``LstmOut.backward`` calls before the
reversed time loop, ``gradc_data[total_time]`` using ``1 - c*c`` rather than ``1 - tanh(c)^2``, ``w_h = ones``,
unscaled ``np.random.randn`` gate weights, zero biases, lr 0.00037, 5001 epochs). Its ``HiddenLayer.backward`` and
``OutputLayer.backward`` *assign* ``self.grad_* = ...`` (no accumulation) and ``step()`` does ``w -= lr * grad``.
The flattened text ends the loop body with
``... gradh_data[t] = LstmHidden.grad_hpre LstmHidden.step(lr=0.00037) LstmOut.step(lr=0.00037) if e%200 == 0 :``
and the two ``step`` calls can be indented two ways:

- Reading A, "step after the time loop": the steps sit at the epoch-loop level, next to the ``if e%200 == 0``
  plotting block, and run once per epoch. Since backward overwrites the gradients, only the last call's
  (t = 0, i.e. ``LstmOut.backward(y[0], h_data[1], train_y[0])`` and the hidden backward at t = 0) gradients are
  ever applied: here the overwriting matters.
- Reading B, "step inside the time loop": the steps sit directly under ``gradh_data[t] = LstmHidden.grad_hpre``
  inside ``for t in reversed(range(total_time-1))``, so 99 parameter steps are taken per epoch, each on that
  timestep's (partial, wrong) gradient; the overwriting then does not matter.

The blog (section 6) says runs very easily overflow to NaN, and one that survives the first epoch is fine after.
Its global ``np.random.randn`` calls become one ``np.random.default_rng(seed)`` drawing the same distributions in
the same order (train_y noise, w_f, w_i, w_g, w_o, v_f, v_i, v_g, v_o). No plotting, no tqdm. Usage:
``python examples/seed001_blog_readings.py --seeds 20 --epochs 5001 [--jobs 2] [--verbose]``
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import numpy as np

READINGS = {"A": "step after the time loop (once per epoch)", "B": "step inside the time loop (every timestep)"}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class HiddenLayer:
    def __init__(self, input_size, hidden_size, rng):
        self.w_f = rng.standard_normal((hidden_size, input_size))  # blog: np.random.randn(hidden_size, input_size)
        self.w_i = rng.standard_normal((hidden_size, input_size))
        self.w_g = rng.standard_normal((hidden_size, input_size))
        self.w_o = rng.standard_normal((hidden_size, input_size))
        self.v_f = rng.standard_normal((hidden_size, hidden_size))
        self.v_i = rng.standard_normal((hidden_size, hidden_size))
        self.v_g = rng.standard_normal((hidden_size, hidden_size))
        self.v_o = rng.standard_normal((hidden_size, hidden_size))
        self.b_f = np.zeros([hidden_size, 1])
        self.b_i = np.zeros([hidden_size, 1])
        self.b_g = np.zeros([hidden_size, 1])
        self.b_o = np.zeros([hidden_size, 1])

    def forward(self, x, h_pre, c_pre):
        self.Fgate = sigmoid(np.dot(self.w_f, x) + np.dot(self.v_f, h_pre) + self.b_f)
        self.Igate = sigmoid(np.dot(self.w_i, x) + np.dot(self.v_i, h_pre) + self.b_i)
        self.Ggate = np.tanh(np.dot(self.w_g, x) + np.dot(self.v_g, h_pre) + self.b_g)
        self.Ogate = sigmoid(np.dot(self.w_o, x) + np.dot(self.v_o, h_pre) + self.b_o)
        c_cur = self.Fgate * c_pre + self.Igate * self.Ggate
        h_cur = self.Ogate * np.tanh(c_cur)
        return h_cur, c_cur

    def backward(self, Fgate, Igate, Ggate, Ogate, x, grad_cnext, Fgate_next, grad_hcur, c_cur, c_pre, h_pre):
        self.grad_ccur = grad_cnext * Fgate_next + grad_hcur * Ogate * (1 - np.tanh(c_cur) * np.tanh(c_cur))
        self.grad_hpre = self.grad_ccur * (
            np.dot(self.v_f.T, c_pre * Fgate * (1 - Fgate))
            + np.dot(self.v_g.T, Igate * (1 - Ggate * Ggate))
            + np.dot(self.v_i.T, Ggate * Igate * (1 - Igate))
        )
        self.grad_wf = np.dot(self.grad_ccur * c_pre * Fgate * (1 - Fgate), x.T)
        self.grad_wi = np.dot(self.grad_ccur * Ggate * Igate * (1 - Igate), x.T)
        self.grad_wg = np.dot(self.grad_ccur * Igate * (1 - Ggate * Ggate), x.T)
        self.grad_wo = np.dot(grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate), x.T)
        self.grad_vf = np.dot(self.grad_ccur * c_pre * Fgate * (1 - Fgate), h_pre.T)
        self.grad_vi = np.dot(self.grad_ccur * Ggate * Igate * (1 - Igate), h_pre.T)
        self.grad_vg = np.dot(self.grad_ccur * Igate * (1 - Ggate * Ggate), h_pre.T)
        self.grad_vo = np.dot(grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate), h_pre.T)
        self.grad_bf = self.grad_ccur * c_pre * Fgate * (1 - Fgate)
        self.grad_bi = self.grad_ccur * Ggate * Igate * (1 - Igate)
        self.grad_bg = self.grad_ccur * Igate * (1 - Ggate * Ggate)
        self.grad_bo = grad_hcur * np.tanh(c_cur) * Ogate * (1 - Ogate)

    def step(self, lr=0.01):
        for name in ("w_f", "w_i", "w_g", "w_o", "v_f", "v_i", "v_g", "v_o", "b_f", "b_i", "b_g", "b_o"):
            setattr(self, name, getattr(self, name) - lr * getattr(self, "grad_" + name.replace("_", "")))


class OutputLayer:
    def __init__(self, hidden_size, output_size):
        self.w_h = np.ones([output_size, hidden_size])
        self.b_h = np.zeros([output_size, 1])

    def forward(self, h_cur):
        return np.dot(self.w_h, h_cur) + self.b_h

    def backward(self, y, h_cur, train_data):
        delta = y - train_data
        self.grad_wh = np.dot(delta, h_cur.T)
        self.grad_hcur = np.dot(self.w_h.T, delta)
        self.grad_bh = delta

    def step(self, lr=0.001):
        self.w_h = self.w_h - lr * self.grad_wh
        self.b_h = self.b_h - lr * self.grad_bh


def weights_finite(LstmHidden, LstmOut):
    arrays = [v for n, v in vars(LstmHidden).items() if n[:2] in ("w_", "v_", "b_")] + [LstmOut.w_h, LstmOut.b_h]
    return all(np.isfinite(a).all() for a in arrays)


def run(reading, seed, epoch=5001, lr=0.00037):
    """One blog run; stops once both the weights and the loss have gone non-finite (NaN then persists)."""
    rng = np.random.default_rng(seed)
    train_x = np.linspace(0.01, 1, 600).reshape(100, 6, 1)
    train_y = train_x * train_x + rng.standard_normal((100, 6, 1)) / 200
    LstmHidden = HiddenLayer(6, 10, rng)
    LstmOut = OutputLayer(10, 6)
    Fgate_data = np.zeros([101, 10, 1])
    Igate_data = np.zeros([100, 10, 1])
    Ggate_data = np.zeros([100, 10, 1])
    Ogate_data = np.zeros([100, 10, 1])
    gradc_data = np.zeros([101, 10, 1])
    gradh_data = np.zeros([101, 10, 1])
    c_data = np.zeros([101, 10, 1])
    h_data = np.zeros([101, 10, 1])
    y = np.zeros([100, 6, 1])
    total_time = len(train_x)
    rec = {"reading": reading, "seed": seed, "first_bad": None, "first_bad_loss": None, "loss0": None, "final": None}
    with np.errstate(all="ignore"):
        for e in range(epoch):
            for t in range(total_time):
                h_data[t + 1], c_data[t + 1] = LstmHidden.forward(train_x[t], h_data[t], c_data[t])
                Fgate_data[t] = LstmHidden.Fgate
                Igate_data[t] = LstmHidden.Igate
                Ggate_data[t] = LstmHidden.Ggate
                Ogate_data[t] = LstmHidden.Ogate
                y[t] = LstmOut.forward(h_data[t + 1])
            loss = float(np.mean((y - train_y) ** 2))  # the blog's final `loss = (y-train_y)**2`, averaged
            if e == 0:
                rec["loss0"] = loss
            LstmOut.backward(y[total_time - 1], h_data[total_time], train_y[total_time - 1])
            gradh_data[total_time] = LstmOut.grad_hcur
            gradc_data[total_time] = (
                gradh_data[total_time] * Ogate_data[total_time - 1] * (1 - c_data[total_time] * c_data[total_time])
            )
            LstmOut.backward(y[total_time - 2], h_data[total_time - 1], train_y[total_time - 2])
            gradh_data[total_time - 1] = LstmOut.grad_hcur
            for t in reversed(range(total_time - 1)):
                LstmOut.backward(y[t], h_data[t + 1], train_y[t])
                LstmHidden.backward(
                    Fgate_data[t],
                    Igate_data[t],
                    Ggate_data[t],
                    Ogate_data[t],
                    train_x[t],
                    gradc_data[t + 2],
                    Fgate_data[t + 1],
                    gradh_data[t + 1],
                    c_data[t + 1],
                    c_data[t],
                    h_data[t],
                )
                gradc_data[t + 1] = LstmHidden.grad_ccur
                gradh_data[t] = LstmHidden.grad_hpre
                if reading == "B":
                    LstmHidden.step(lr=lr)
                    LstmOut.step(lr=lr)
            if reading == "A":
                LstmHidden.step(lr=lr)
                LstmOut.step(lr=lr)
            loss_ok = np.isfinite(loss) and np.isfinite(y).all()
            if rec["first_bad"] is None and not (loss_ok and weights_finite(LstmHidden, LstmOut)):
                rec["first_bad"] = e  # loss/outputs of this epoch's forward, or weights after this epoch's step(s)
            if not loss_ok:
                rec["first_bad_loss"] = e
                return rec
    rec["final"] = loss  # loss of the last epoch's forward, what the blog prints after its loop
    return rec


def summarise(recs, epochs):
    n = len(recs)
    bad = [r for r in recs if r["first_bad"] is not None]
    reading = recs[0]["reading"]
    print(f"Reading {reading}: {READINGS[reading]} -- {n} seeds x {epochs} epochs, lr 0.00037")
    print(f"  non-finite (NaN/inf in loss, outputs or weights): {len(bad)}/{n}")
    for key, label in (("first_bad", "loss, outputs or weights"), ("first_bad_loss", "loss/outputs only")):
        ep = np.array([r[key] for r in bad if r[key] is not None])
        if ep.size:
            print(
                f"  first non-finite epoch ({label}): median {np.median(ep):g}, min {ep.min()}, max {ep.max()};"
                f" at epoch 0: {(ep == 0).sum()}, at epoch 1: {(ep == 1).sum()} (of {ep.size})"
            )
    fin = [r for r in recs if r["final"] is not None]
    if fin:
        f0, f1 = np.array([r["loss0"] for r in fin]), np.array([r["final"] for r in fin])
        print(
            f"  finite runs: {len(fin)}; median epoch-0 MSE {np.median(f0):.4g}, median final MSE {np.median(f1):.4g}"
            f" (min {f1.min():.4g}, max {f1.max():.4g}); final < epoch-0 in {(f1 < f0).sum()}/{len(fin)}"
        )
    print(f"  all runs: median epoch-0 MSE {np.median([r['loss0'] for r in recs]):.4g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=5001)
    ap.add_argument("--readings", default="AB")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="one line per run")
    args = ap.parse_args()
    jobs = [(rd, s, args.epochs) for rd in args.readings for s in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        recs = list(pool.map(run, *zip(*jobs, strict=True)))
    x2 = np.linspace(0.01, 1, 600) ** 2
    print(
        f"Baseline: noise-free y = x^2 on the 600 points, predicting its mean gives MSE = var(y) = {x2.var():.4g};"
        f" predicting 0 gives mean(y^2) = {np.mean(x2**2):.4g}; noise floor (1/200)^2 = {1 / 200**2:.3g}"
    )
    for rd in args.readings:
        group = [r for r in recs if r["reading"] == rd]
        print()
        summarise(group, args.epochs)
        if args.verbose:
            for r in group:
                print(
                    f"    seed {r['seed']:2d}: first_bad {r['first_bad']}, first_bad_loss {r['first_bad_loss']},"
                    f" loss0 {r['loss0']:.4g}, final {r['final']}"
                )


if __name__ == "__main__":
    main()
