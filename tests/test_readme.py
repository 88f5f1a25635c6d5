"""The README's headline numbers are quoted, never kept: every number in its
headline table must appear in the section of the results file the row cites,
so a figure changed in one place and not the other fails here. A row whose
measurement is still to be made reads `pending` and is only checked for its
source."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)#([^)\s]+)\)")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def section(path: Path, anchor: str) -> str:
    """The text under the heading whose anchor is `anchor`, up to the next heading
    of the same or a higher level."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+)\s+(.*)", line)
        if m and slug(m.group(2)) == anchor:
            level = len(m.group(1))
            body = []
            for rest in lines[i + 1:]:
                h = re.match(r"(#+)\s", rest)
                if h and len(h.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    raise AssertionError(f"{path.relative_to(ROOT)}: no heading with anchor #{anchor}")


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def headline_rows(text: str) -> list[list[str]]:
    """The rows of the table under '## Headline results' (header and rule dropped)."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Headline results"
            continue
        if inside and line.startswith("|"):
            rows.append(cells(line))
    assert len(rows) > 2, "README: no table under '## Headline results'"
    assert rows[0] == ["result", "measured", "source"], rows[0]
    return rows[2:]


def contains(text: str, number: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


def missing_numbers(row: list[str]) -> list[str]:
    """The numbers of a row's `measured` cell that its cited section does not hold."""
    _, measured, source = row
    link = LINK.search(source)
    assert link, f"README headline row {row[0]!r}: the source names no file#anchor link"
    path = ROOT / link.group(1)
    assert path.is_file(), f"README headline row {row[0]!r}: {link.group(1)} does not exist"
    body = section(path, link.group(2))
    if measured.lower().startswith("pending"):
        return []
    numbers = NUMBER.findall(measured)
    assert numbers, f"README headline row {row[0]!r}: no number and not pending"
    return [n for n in numbers if not contains(body, n)]


def test_every_headline_number_is_in_the_section_it_cites():
    rows = headline_rows(README.read_text())
    missing = {row[0]: m for row in rows if (m := missing_numbers(row))}
    assert missing == {}


def test_a_number_changed_in_the_readme_only_fails():
    rows = headline_rows(README.read_text())
    row = next(r for r in rows if not r[1].lower().startswith("pending"))
    first = NUMBER.search(row[1]).group(0)
    decimals = len(first.partition(".")[2])
    wrong = f"{float(first) + 10 ** -decimals:.{decimals}f}"  # one unit more in the last place
    assert missing_numbers([row[0], row[1].replace(first, wrong, 1), row[2]]) == [wrong]


@pytest.mark.parametrize("heading, anchor", [
    ("The default recipe", "the-default-recipe"),
    ("Reading the plot (`RUN_DIR/plots/curve.png`)", "reading-the-plot-run_dirplotscurvepng"),
    ("Backtest: was the forecast right?", "backtest-was-the-forecast-right"),
])
def test_anchors_follow_github(heading, anchor):
    assert slug(heading) == anchor
