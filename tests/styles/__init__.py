"""Hand-written NumPy LSTMs in eight coding styles: fixtures for ``mode=diagnose``.

Each module here was written as a different person would write an LSTM (its own names, shapes, loops, caches
and loss convention), independently of ``lstm_exp`` and ``examples/``. Every class keeps the model contract:

- ``Cls(mistakes=())``: correct by default; ``mistakes`` names any combination of the classic backward-pass
  mistakes in ``MISTAKES``, each injected as one wrong line (the forward pass, loss and final state never change).
  A name the style cannot express (``recurrent_not_transposed`` needs separate square per-gate recurrent
  matrices) or an unknown name raises ``ValueError``;
- ``init_params(rng, input_dim, hidden, output_dim) -> dict`` in the style's own names and shapes;
- ``loss_and_grads(params, x, y, h0, c0) -> (loss, grads, (hT, cT))``: float ``x`` gives a squared error,
  integer token ids a softmax cross-entropy; ``grads`` has the keys of ``params`` plus ``"h0"`` and ``"c0"``.
  The batched style (``batched = True``) takes ``(B, T, ...)`` inputs and ``(B, H)`` states.

``STYLES`` lists ``(module_name, class_name, layout_file_stem)``: the module is ``tests/styles/<module_name>.py``
(importable as ``tests.styles.<module_name>``), its layout ``tests/styles/layouts/<layout_file_stem>.yaml``.
"""

STYLES = [
    ("torch_names", "TorchNamesLSTM", "torch_names"),
    ("keras_names", "KerasNamesLSTM", "keras_names"),
    ("cs231n_steps", "StepFunctionsLSTM", "cs231n_steps"),
    ("karpathy_wlstm", "KarpathyLSTM", "karpathy_wlstm"),
    ("colah", "ColahLSTM", "colah"),
    ("min_char_rnn", "MinCharLSTM", "min_char_rnn"),
    ("batched", "BatchedLSTM", "batched"),
    ("tutorial_rows", "TutorialLSTM", "tutorial_rows"),
]

MISTAKES = (
    "sigmoid_of_activation",
    "candidate_from_dc",
    "dh_prev_one_gate",
    "forget_from_c_t",
    "c_carry_without_forget",
    "no_c_carry",
    "no_h_carry",
    "tanh_prime_from_h",
    "tanh_prime_missing",
    "dWh_from_h_t",
    "recurrent_not_transposed",
    "output_weight_last_step",
    "not_summed_over_time",
    "loss_gradient",
)
