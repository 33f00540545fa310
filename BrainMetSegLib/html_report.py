"""The look of the library's self-contained HTML reports (evaluation, follow-up): the inline
style sheet and the small HTML pieces they share. No data, no figures: the reports bring those.
"""

from __future__ import annotations

import html

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2b45;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c5cde0;font-size:13px}
main{padding:16px 32px;max-width:1240px}
section{background:#fff;border-radius:8px;padding:14px 20px;margin:14px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:4px 0 10px;color:#1d2b45}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:right}
th{background:#eef1f6;text-align:center} td:first-child,th:first-child{text-align:left}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1;min-width:150px;background:#eef3fb;border-radius:8px;padding:10px 14px}
.kpi b{display:block;font-size:24px;color:#1d2b45} .kpi span{font-size:12px;color:#55607a}
.grid{display:flex;flex-wrap:wrap;gap:10px} .grid figure{margin:0;max-width:100%} figure img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#55607a;max-width:520px}
.note{font-size:12px;color:#55607a} .warn{color:#a03000}
.sig{font-weight:bold;color:#a03000}
ul{margin:4px 0 4px 18px;padding:0;font-size:13px}
.legend span{display:inline-block;width:14px;height:4px;margin:0 4px 3px 10px;vertical-align:middle}
"""


def figure(src: str, caption: str = "", width: int | None = None) -> str:
    """An embedded image (``src``: a data URI) with an optional caption; ``width`` in CSS pixels."""
    w = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{src}"{w} alt="{html.escape(caption)}">{cap}</figure>'


def table(header: list[str], rows: list[list[str]]) -> str:
    """A table of cells already in HTML (escaped by the caller), first row the header."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
