"""The report's survival analysis and its loss curves without survivorship, on hand-built runs (no MLflow)."""

import numpy as np
import pandas as pd
import pytest

from lstm_exp.sweeps import figures, labels, statistics, survival


def test_kaplan_meier_matches_the_hand_computation_with_ties_and_censoring():
    # 8 runs: divergences at 3, 5, 5, 10; ended without diverging at 5 (a tie with two divergences), 8, 10, 12.
    durations = [3, 5, 5, 5, 8, 10, 10, 12]
    events = [True, True, True, False, False, True, False, False]
    km = survival.kaplan_meier(durations, events)
    assert km["step"].tolist() == [3, 5, 8, 10, 12]
    assert km["at_risk"].tolist() == [8, 7, 4, 3, 1]  # the run censored at 5 is still at risk at 5
    assert km["events"].tolist() == [1, 2, 0, 1, 0]
    assert km["censored"].tolist() == [0, 1, 1, 1, 1]
    # S(3) = 7/8; S(5) = 7/8 * 5/7 = 5/8; S(8) = 5/8; S(10) = 5/8 * 2/3 = 5/12; S(12) = 5/12
    assert km["survival"].tolist() == pytest.approx([7 / 8, 5 / 8, 5 / 8, 5 / 12, 5 / 12])
    assert survival.survival_median(km) == 10  # the first step where S <= 0.5


def test_kaplan_meier_median_is_missing_when_half_the_runs_never_diverge():
    km = survival.kaplan_meier([4, 9, 9, 9], [True, False, False, False])
    assert km["survival"].tolist() == pytest.approx([0.75, 0.75])
    assert np.isnan(survival.survival_median(km))
    assert survival.survival_median(survival.kaplan_meier([4, 6], [True, False])) == 4  # S(4) = 0.5


def test_order_quantile_counts_inf_and_skips_missing_values():
    inf, nan = np.inf, np.nan
    values = np.array(
        [  # runs x steps
            [1.0, 1.0, inf, inf],
            [2.0, inf, inf, nan],
            [3.0, 3.0, 3.0, nan],
            [4.0, 4.0, 4.0, 4.0],
        ]
    )
    with np.errstate(all="raise"):  # no inf - inf anywhere
        median = figures.order_quantile(values, 0.5)
    # 3rd step: 2 of 4 runs finite, half diverged -> +inf; 4th: one finite, one inf counted (NaN: not) -> +inf
    assert median.tolist() == [3.0, 4.0, inf, inf]
    assert figures.order_quantile(values, 0.25).tolist() == [2.0, 3.0, 4.0, 4.0]
    assert np.isnan(figures.order_quantile(np.full((2, 1), np.nan), 0.5)[0])


def runs_frame(div_steps: dict) -> pd.DataFrame:
    """Completed runs as ``per_run`` gives them: id, diverged flag and divergence step."""
    return pd.DataFrame(
        {
            "run_id": list(div_steps),
            "diverged": [step is not None for step in div_steps.values()],
            "div_step": [np.nan if step is None else float(step) for step in div_steps.values()],
        }
    )


def history(steps, value) -> pd.Series:
    return pd.Series(value, index=list(steps), dtype=float)


LOGGED = range(0, 300, 5)


def test_a_condition_whose_runs_diverge_never_looks_better_than_a_healthy_one():
    # Unstable: 5 of 6 runs diverge at steps 7-17 (their histories stop there); the one survivor reaches a lower
    # loss than any healthy run. Over the runs still logging, its "median" after step 17 would be that survivor.
    divs = {"u0": 7, "u1": 7, "u2": 7, "u3": 13, "u4": 17, "u5": None}
    unstable = {rid: history([s for s in LOGGED if s <= (d or 299)], 2.0) for rid, d in divs.items()}
    unstable["u5"] = history(LOGGED, 0.5)
    healthy = {f"h{i}": history(LOGGED, 1.0 + 0.1 * i) for i in range(6)}
    bad = figures.condition_band(unstable, runs_frame(divs)).set_index("step")
    good = figures.condition_band(healthy, runs_frame(dict.fromkeys(healthy))).set_index("step")
    after = good.index[good.index > 17]
    assert (bad.loc[after, "median"] >= good.loc[after, "median"]).all()
    assert np.isinf(bad.loc[after, ["median", "q75"]]).all().all()
    assert (bad.loc[after, "alive"] == 1).all() and (bad.loc[after, "n"] == 6).all()
    # before the divergences the median is the runs' own; it turns +inf the step after half of them diverged
    assert bad.loc[7, "median"] == 2.0 and np.isinf(bad.loc[8, "median"])
    assert bad.loc[7, "alive"] == 6 and bad.loc[8, "alive"] == 3 and bad.loc[14, "alive"] == 2


def test_a_run_that_ended_without_diverging_is_censored_after_its_last_step():
    runs = runs_frame({"short": None, "long": None, "dead": 4})
    short = pd.Series([1.0, 2.0, 1.0], index=[0, 5, 10])
    histories = {"short": short, "long": history([0, 5, 10, 15, 20], 3.0), "dead": history([0], 9.0)}
    band = figures.condition_band(histories, runs).set_index("step")
    assert band.index.tolist() == [0, 4, 5, 10, 15, 20]  # the logged steps, the divergence step and the next
    assert band.loc[15, "n"] == 2 and band.loc[15, "alive"] == 1  # "short" is no longer counted, "dead" still is
    assert band.loc[4, "alive"] == 3 and band.loc[5, "alive"] == 2  # "dead" held at its last value up to step 4
    # step 4: "short" interpolated to 1.8, "long" 3.0, "dead" held at 9.0
    assert band.loc[4, ["q25", "median", "q75"]].tolist() == pytest.approx([1.8, 3.0, 9.0])


def test_a_diverged_run_without_a_divergence_step_diverged_at_its_last_logged_step():
    runs = runs_frame({"old": None}).assign(diverged=True)
    band = figures.condition_band({"old": history([0, 5], 2.0)}, runs).set_index("step")
    assert band["median"].tolist() == [2.0, 2.0, np.inf]
    assert band.index.tolist() == [0, 5, 6]


def summary_of(**factors) -> pd.DataFrame:
    n = len(next(iter(factors.values())))
    counts = {"runs": [6] * n, "completed": [6] * n, "diverged": [5] + [0] * (n - 1)}
    return pd.DataFrame({**factors, **counts}).reindex(columns=[*factors, *statistics.STATS])


def test_the_legend_says_the_runs_behind_each_curve():
    summary = summary_of(**{"optim.clip": [0.0, 6.0]})
    summary.loc[0, "surv_median"] = 7
    summary.loc[1, ["runs", "completed", "diverged"]] = [6, 5, 1]
    unwrapped = [" ".join(entry.split()) for entry in figures.legend_labels(summary)]
    assert unwrapped == [
        "optim.clip=0.0 (n=6, 5 diverged, half by step 7)",
        "optim.clip=6.0 (n=5, 1 diverged, 1 not completed, left out)",
    ]


def test_labels_use_only_the_factors_that_vary():
    summary = summary_of(**{"optim.clip": [0.0, 6.0], "optim.clip_mode": ["state", "state"]})
    assert labels.group_labels(summary) == ["optim.clip=0.0", "optim.clip=6.0"]
    assert labels.fixed_label(summary) == "optim.clip_mode=state"
    assert figures.tick_labels(summary) == (["0.0", "6.0"], "optim.clip")
    two = summary_of(**{"optim.clip": [0.0, 6.0], "task.corpus": ["/data/" + "x" * 40 + "/alice.txt", "null"]})
    ticks, title = figures.tick_labels(two)
    assert ticks == ["optim.clip=0.0\ntask.corpus=…/alice.txt", "optim.clip=6.0\ntask.corpus=null"]
    assert title == "condition"
    assert labels.shorten("/data/" + "x" * 40, 24) == "…" + "x" * 23  # no "/" left to cut at
