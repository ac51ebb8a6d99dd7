"""The pages say what the code does: the catalogue's table lists every mistake with its lines as the code has them."""

import re
from pathlib import Path

from lstm_exp.core.faults import CATALOGUE

DOCS = Path(__file__).resolve().parents[1] / "docs"


def table_rows(page: str, marker: str) -> list[list[str]]:
    """The cells of the markdown table between ``<!-- marker ... -->`` and ``<!-- /marker -->``."""
    text = (DOCS / page).read_text()
    block = re.search(rf"<!-- {marker}:.*?-->\n(.*?)<!-- /{marker} -->", text, re.S).group(1)
    lines = [line for line in block.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_the_catalogue_table_lists_every_mistake_with_its_source_and_lines():
    rows = table_rows("own_lstm.md", "catalogue")
    assert [r[0] for r in rows] == [f"`{m.name}`" for m in CATALOGUE]
    for row, m in zip(rows, CATALOGUE, strict=True):
        assert row[1:4] == [m.source, f"`{m.wrong}`", f"`{m.right}`"], m.name
