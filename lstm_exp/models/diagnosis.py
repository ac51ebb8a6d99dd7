"""What ``mode=diagnose`` found: the verdict, the findings, the named mistakes, one row per tensor, and how it reads.

``str(diagnosis)`` is the console's table and sentence; ``_repr_html_`` shows the same in Jupyter; ``as_json()`` is
``diagnosis.json``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

OWN_TOL = 1e-7  # the gradient check's tolerance (lstm_exp.core.gradcheck.TOLERANCE)


@dataclass
class Row:
    """One of the model's tensors: its own check's error, the reference's error per case, and the result."""

    name: str
    own_error: float  # elementwise, against central differences of its own loss (after any loss scale)
    reference_errors: list  # normwise, against the core on identical weights, per case
    result: str  # ok | WRONG | one step (t=k) | downstream of the loss gradient

    @property
    def passed(self) -> bool:
        return self.result == "ok"

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "gradcheck_rel_error": _json(self.own_error),
            "reference_rel_error": _json(max(self.reference_errors)),
            "passed": self.passed,
            "result": self.result,
        }


@dataclass
class Diagnosis:
    label: str  # the model's name
    verdict: str  # correct | forward_differs | backward_differs
    findings: list  # in lstm_exp.models.diagnose.FINDINGS order
    matched_faults: list  # catalogued mistakes (lstm_exp.core.faults) that reproduce the gradients exactly
    loss_convention: str
    rows: list  # Row per tensor
    notes: list  # one line per finding, most urgent first, in the model's own names
    header: str  # the problem it was run on
    cases: list = field(default_factory=list)  # the problems' short names

    @property
    def tensors(self) -> list[dict]:
        return [r.as_json() for r in self.rows]

    @property
    def sentence(self) -> str:
        """The verdict and what was found, in one paragraph."""
        if self.verdict == "correct":
            worst = max((max(r.reference_errors) for r in self.rows), default=0.0)
            return (
                f"{self.label}: correct. Its loss is the reference's ({self.loss_convention}) and every gradient "
                f"matches the reference (max normwise error {worst:.1e}) and its own central differences."
            )
        return f"{self.label}: {self.verdict.replace('_', ' ')}. " + " ".join(f"{n}." for n in self.notes)

    @property
    def table(self) -> str:
        width = max([len("tensor"), *(len(r.name) for r in self.rows)]) + 2
        cases = [f"ref {c}" for c in self.cases]
        col = max([11, *(len(c) + 2 for c in cases)])
        lines = [self.header, f"  {'tensor':<{width}}{'own':>11}" + "".join(f"{c:>{col}}" for c in cases) + "  result"]
        for r in self.rows:
            errors = "".join(f"{_cell(e):>{col}}" for e in r.reference_errors)
            lines.append(f"  {r.name:<{width}}{_cell(r.own_error):>11}{errors}  {r.result}")
        if any(math.isinf(e) for r in self.rows for e in [r.own_error, *r.reference_errors]):
            lines.append(
                "  (≠0: the reference's gradient is exactly zero there, e.g. at T=1 from a zero state, "
                "and yours is not)"
            )
        return "\n".join(lines)

    @property
    def summary(self) -> str:
        """The last line the console prints: verdict, findings, matched mistakes."""
        return (
            f"verdict: {self.verdict}"
            + (f"; findings: {', '.join(self.findings)}" if self.findings else "")
            + (f"; matched faults: {' + '.join(self.matched_faults)}" if self.matched_faults else "")
        )

    def __str__(self) -> str:
        return f"{self.table}\n{self.sentence}\n{self.summary}"

    def as_json(self) -> dict:
        keys = ("verdict", "findings", "matched_faults", "loss_convention", "tensors", "sentence")
        return {k: getattr(self, k) for k in keys}

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["tensor", "own", *[f"ref {c}" for c in self.cases], ""])
        body = "".join(
            "<tr>"
            + f"<td><code>{html.escape(r.name)}</code></td><td>{_cell(r.own_error)}</td>"
            + "".join(f"<td>{_cell(e)}</td>" for e in r.reference_errors)
            + f"<td>{'✓' if r.passed else '<b>' + html.escape(r.result) + '</b>'}</td></tr>"
            for r in self.rows
        )
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<p><b>{html.escape(self.label)}: {html.escape(self.verdict)}</b> ({html.escape(self.summary)})</p>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f"<table><tr>{head}</tr>{body}</table>"
        )


def _cell(value: float) -> str:
    return "≠0" if math.isinf(value) else f"{value:.2e}"


def _json(value: float):
    return float(value) if np.isfinite(value) else None
