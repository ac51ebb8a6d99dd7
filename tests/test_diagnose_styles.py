"""mode=diagnose names every catalogued mistake in LSTMs written in eight styles it never saw (tests/styles/): PyTorch's
and Keras's names, CS231n's step functions, karpathy's one WLSTM matrix with its bias row, colah's [h, x], a
min-char-rnn loop, a batched model and per-gate row vectors. Each style injects any mistake as the wrong line people
write; the diagnosis must name it, alone and in pairs, with the same verdict on every seed.

The fast suite runs every mistake in two layouts (fused names; per-gate names of their own) and every correct style;
``-m slow`` runs every mistake in those two layouts on both kinds of task and ten seeds, every style with every
mistake it can write, and every pair in two styles (every pair in all eight was run once by hand:
1,280 pairs, only the inseparable one below unnamed)."""

import importlib
import itertools
from pathlib import Path

import pytest

import lstm_exp
from lstm_exp.core.faults import compatible
from tests.styles import MISTAKES, STYLES

LAYOUTS = Path(__file__).resolve().parent / "styles" / "layouts"
SQUARE = {"min_char_rnn", "tutorial_rows"}  # separate square recurrent matrices per gate
TASKS = ("char", "x2")  # token ids with cross-entropy; six inputs, six outputs with squared error
# a wrong loss gradient and a wrong output-weight gradient together cannot be separated: the outputs' gradient is
# read back from the output layer's weight gradient (docs/own_lstm.md, "What it cannot tell")
INSEPARABLE = {frozenset({"loss_gradient", "output_weight_last_step"})}


def style(module: str):
    name = next(cls for mod, cls, _ in STYLES if mod == module)
    return getattr(importlib.import_module(f"tests.styles.{module}"), name)


def expressible(module: str) -> list[str]:
    return [m for m in MISTAKES if m != "recurrent_not_transposed" or module in SQUARE]


def diagnosis(module: str, mistakes=(), task="char", seed=0):
    layout = next(stem for mod, _, stem in STYLES if mod == module)
    model = style(module)(mistakes=tuple(mistakes))
    return lstm_exp.diagnose(
        model, layout=str(LAYOUTS / f"{layout}.yaml"), task=task, seed=seed, tracking__enabled=False
    )


def assert_named(d, mistakes):
    """Every mistake is named: a catalogued one in matched_faults, a wrong loss gradient as a finding."""
    for m in mistakes:
        if m == "loss_gradient":
            assert "loss_gradient" in d.findings, d.sentence
        else:
            assert m in d.matched_faults, d.sentence
    assert d.verdict == "backward_differs"


@pytest.mark.parametrize("module", [m for m, _, _ in STYLES])
def test_every_correct_style_is_correct_and_matches_no_mistake(module):
    d = diagnosis(module)
    assert (d.verdict, d.findings, d.matched_faults) == ("correct", [], []), d.sentence


@pytest.mark.parametrize(
    "module,mistake",
    # fused names (batched) and per-gate names of its own (row vectors); a recurrent matrix used untransposed needs
    # square per-gate matrices, so its second layout is min-char-rnn's column vectors
    [
        pytest.param(module, m, marks=[pytest.mark.slow] if module != "tutorial_rows" else [])
        for m in MISTAKES
        for module in ("tutorial_rows", "batched" if m in expressible("batched") else "min_char_rnn")
    ],
)
def test_each_mistake_is_named_in_a_fused_and_a_per_gate_layout(module, mistake):
    assert_named(diagnosis(module, [mistake]), [mistake])


@pytest.mark.parametrize(
    "module,pair",
    [
        ("tutorial_rows", ("c_carry_without_forget", "tanh_prime_from_h")),  # the two-bug user of the issue
        ("batched", ("no_h_carry", "forget_from_c_t")),
        ("tutorial_rows", ("recurrent_not_transposed", "dWh_from_h_t")),
        ("batched", ("loss_gradient", "dh_prev_one_gate")),
        ("tutorial_rows", ("not_summed_over_time", "sigmoid_of_activation")),
        ("batched", ("output_weight_last_step", "no_c_carry")),
    ],
)
def test_two_mistakes_are_both_named(module, pair):
    assert_named(diagnosis(module, pair), pair)


def test_the_two_bug_user_is_told_both_bugs_in_its_own_names():
    d = diagnosis("tutorial_rows", ("c_carry_without_forget", "tanh_prime_from_h"))
    assert d.matched_faults == ["c_carry_without_forget", "tanh_prime_from_h"]
    assert d.findings == ["local_derivatives", "bptt_carry"]
    assert "1 - h_t^2 where the LSTM needs 1 - tanh(c_t)^2 (U_i, U_f, U_g, W_i, W_f, W_g, bias_i, bias_f" in d.sentence
    assert "not multiplied by the forget gate f" in d.sentence


def test_a_wrong_loss_gradient_is_pinned_to_the_loss_gradient_not_to_the_lstm():
    d = diagnosis("min_char_rnn", ["loss_gradient"])  # dy[x_t] -= 1 instead of dy[y_t]
    assert (d.findings, d.matched_faults) == (["loss_gradient"], [])
    assert d.notes[0].startswith("the gradient of the loss with respect to the outputs is wrong (fix this first)")
    assert {r.result for r in d.rows if r.name not in ("Why", "by")} == {"downstream of the loss gradient"}


def test_a_gradient_overwritten_at_every_step_names_the_tensor_and_its_block():
    d = diagnosis("torch_names", ["not_summed_over_time"])  # the f block of weight_ih, in a fused (4H, D) matrix
    assert d.findings == ["not_summed_over_time"] and d.matched_faults == ["not_summed_over_time"]
    assert "weight_ih (its f block, step 0)'s gradient is overwritten at every step" in d.sentence
    assert "bptt_carry" not in d.findings


def test_the_cell_carry_and_the_hidden_carry_get_different_sentences():
    cell, hidden = diagnosis("colah", ["no_c_carry"]), diagnosis("colah", ["no_h_carry"])
    assert cell.matched_faults == ["no_c_carry"] and hidden.matched_faults == ["no_h_carry"]
    assert "the cell carry is dropped" in cell.sentence and "the hidden carry is dropped" in hidden.sentence


def test_a_wrong_dc_is_read_as_one_term_upstream_of_three_gates():
    d = diagnosis("keras_names", ["tanh_prime_missing"])
    assert "gates i, f, g wrong and o right: the cell-state gradient dc is wrong" in d.sentence


def test_the_table_keeps_its_columns_for_long_names_and_explains_its_infinite_cells():
    d = diagnosis("min_char_rnn", ["forget_from_c_t"])  # at T=1 from a zero state the reference's Wxf gradient is 0
    width = max(len(r.name) for r in d.rows) + 2
    lines = d.table.splitlines()
    rows = lines[2 : 2 + len(d.rows)]
    for row, line in zip(d.rows, rows, strict=True):  # the name column, then the own column: each where it belongs
        assert line[2 : 2 + width].strip() == row.name and line[2 + width : 13 + width].strip() != ""
    assert any("≠0" in line for line in rows) and lines[-1].startswith(
        "  (≠0: the reference's gradient is exactly zero"
    )
    assert "inf" not in d.table


def seed_invariant(module, mistakes, task, seeds):
    results = set()
    for seed in seeds:
        d = diagnosis(module, mistakes, task, seed)
        assert_named(d, mistakes) if mistakes else None
        results.add((d.verdict, tuple(d.findings), tuple(d.matched_faults), tuple(d.notes)))
    assert len(results) == 1, results


NAMED_IN = {m: ("tutorial_rows", "batched" if m in expressible("batched") else "min_char_rnn") for m in MISTAKES}


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("module,mistake", [(mod, m) for m, mods in NAMED_IN.items() for mod in mods], ids=str)
def test_every_mistake_gets_the_same_diagnosis_on_ten_seeds_in_two_layouts(module, mistake, task):
    seed_invariant(module, [mistake], task, seeds=range(10))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "module,mistake", [(mod, m) for mod, _, _ in STYLES for m in (None, *expressible(mod))], ids=str
)
def test_every_style_names_every_mistake_it_can_write(module, mistake, task):
    seed_invariant(module, [mistake] if mistake else [], task, seeds=[3])


@pytest.mark.slow
@pytest.mark.parametrize("module", ["keras_names", "min_char_rnn"])  # a fused matrix; per-gate column vectors
def test_every_pair_of_mistakes_is_named(module):
    for pair in itertools.combinations(expressible(module), 2):
        pieces = [m for m in pair if m != "loss_gradient"]
        if frozenset(pair) in INSEPARABLE or ("not_summed_over_time" not in pieces and not compatible(pieces)):
            continue
        assert_named(diagnosis(module, pair), pair)
