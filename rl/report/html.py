"""HTML building blocks of the report: escaping, tables, sections, the page shell.

Plain HTML and one inline stylesheet, no JavaScript and no external URL
(the page must open offline, from a run directory copied off a cluster).
Every value that comes from a run passes through `esc`.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0; background: #f4f5f7; }
header { background: #1d2330; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #c5cad3; font-size: 13px; }
nav { padding: 8px 28px; background: #fff; border-bottom: 1px solid #dde0e5; font-size: 13px; }
nav a { margin-right: 14px; color: #2458b3; text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde0e5; border-radius: 6px; padding: 4px 18px 14px;
          margin: 14px 0; }
h2 { font-size: 17px; margin: 12px 0 6px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
p.why { color: #5a6270; margin: 2px 0 8px; }
p.note { color: #8a5a00; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e8ec; padding: 3px 10px; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; }
td.l, th.l { text-align: left; }
td.miss { color: #b3261e; }
td.hit { color: #1e7b34; }
td.na { color: #9aa0aa; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.figs { display: flex; flex-wrap: wrap; gap: 8px; }
.figs img { max-width: 560px; }
.figs svg { background: #fff; }
pre { background: #f6f7f9; border: 1px solid #e6e8ec; padding: 8px; font-size: 12px; overflow-x: auto;
      max-height: 480px; }
ul.warn { color: #8a5a00; margin: 4px 0; }
"""


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def num(v, spec: str = ".4g") -> str:
    """A number for a cell; '-' for missing or not finite."""
    if v is None or isinstance(v, str):
        return "-" if v is None else esc(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return esc(v)
    return "-" if not math.isfinite(f) else format(f, spec)


def interval(lo_hi, spec: str = ".3f") -> str:
    if lo_hi is None:
        return "-"
    return f"[{num(lo_hi[0], spec)}, {num(lo_hi[1], spec)}]"


class Cell(str):
    """A table cell that is already HTML (with an optional class), not escaped again."""

    def __new__(cls, content: str, cls_name: str = ""):
        obj = super().__new__(cls, content)
        obj.cls_name = cls_name
        return obj


def table(head: list[str], rows: Iterable[list], left: int = 1) -> str:
    """A table; the first `left` columns align left. Cells are escaped unless Cell."""
    def cell(tag, i, v):
        classes = [c for c in ("l" if i < left else "", getattr(v, "cls_name", "")) if c]
        attr = f' class="{" ".join(classes)}"' if classes else ""
        return f"<{tag}{attr}>{v if isinstance(v, Cell) else esc(v)}</{tag}>"

    out = ["<table><thead><tr>", *(cell("th", i, h) for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for row in rows:
        out += ["<tr>", *(cell("td", i, v) for i, v in enumerate(row)), "</tr>"]
    out.append("</tbody></table>")
    return "".join(out)


def figure(uri: str | None, alt: str) -> str:
    return "" if uri is None else f'<img src="{uri}" alt="{esc(alt)}">'


def section(sid: str, title: str, why: str, body: str) -> str:
    """One report section with a stable id (tests and links rely on it)."""
    return (f'<section id="{esc(sid)}"><h2>{esc(title)}</h2><p class="why">{esc(why)}</p>\n{body}\n'
            "</section>")


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def warnings(items: list[str]) -> str:
    if not items:
        return ""
    return '<ul class="warn">' + "".join(f"<li>{esc(w)}</li>" for w in items) + "</ul>"


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document; `sections` are (id, nav label, html)."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(label)}</a>' for sid, label, _ in sections)
    body = "\n".join(h for _, _, h in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>\n"
            f"<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>\n<nav>{nav}</nav>\n"
            f"<main>\n{body}\n</main></body></html>\n")
