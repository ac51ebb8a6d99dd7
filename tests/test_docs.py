"""The pages say what the code does: the catalogue's table lists every mistake with its lines as the code has them,
the configuration reference is the schema's, and every page and link the README promises exists."""

import re
from pathlib import Path

from lstm_exp.core.faults import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


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


def test_the_configuration_reference_is_the_schemas():
    from lstm_exp.runner import reference

    assert (DOCS / "config.md").read_text() == reference.page(), (
        'docs/config.md is stale: python -c "from lstm_exp.runner.reference import write; write()"'
    )


def test_the_reference_lists_every_setting_of_the_schema():
    import dataclasses

    from lstm_exp.runner import reference, schema

    page = reference.page()
    for field in dataclasses.fields(schema.NanConfig):
        assert f"`nan.{field.name}`" in page
    for mode in schema.Mode:
        assert f"`{mode.name}`" in page
    for layout in (ROOT / "conf" / "layout").glob("*.yaml"):
        assert f"`{layout.stem}`" in page


def test_every_page_is_in_the_site_and_every_readme_link_resolves():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    in_nav = {next(iter(entry.values())) for entry in nav}
    assert in_nav == {p.name for p in DOCS.glob("*.md")}
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).is_file(), target


def test_the_readme_is_short_and_its_quick_start_has_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", readme, re.S).group(1)
    assert len(block.strip().splitlines()) == 2
