"""``index.html`` of a batch folder: a static page with every video, its prompt, states, seed and settings,
that opens from disk (relative links, no script, no server). Every text is HTML-escaped."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from vstar.outputs import GALLERY_MARKER

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.5em; vertical-align: top; background: #fff; }
th.item { text-align: left; max-width: 22em; font-weight: normal; }
.name { font-weight: bold; font-family: monospace; }
ol { margin: 0.3em 0; padding-left: 1.4em; font-size: 0.9em; color: #444; }
video, img { display: block; width: 256px; image-rendering: pixelated; background: #000; }
.meta { font-size: 0.8em; color: #555; margin-top: 0.3em; }
.failed { color: #b00020; font-size: 0.85em; max-width: 256px; }
dl { font-size: 0.75em; margin: 0.3em 0 0; display: grid; grid-template-columns: auto auto; gap: 0 0.6em; }
dt { color: #777; } dd { margin: 0; font-family: monospace; }
"""


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(path: str) -> str:
    return _text(quote(path))  # a relative URL: folders and names percent-encoded, then escaped


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "<td class=\"missing\">not made</td>"
    if r["status"] == "failed":
        return f"<td><div class=\"failed\">failed: {_text(r['error'])}</div></td>"
    src = _link(r["output"])
    media = (f"<img src=\"{src}\" alt=\"{_text(r['name'])}\">" if r["output"].lower().endswith(".gif")
             else f"<video src=\"{src}\" controls loop muted autoplay playsinline></video>")
    settings = "".join(f"<dt>{_text(k)}</dt><dd>{_text(v)}</dd>" for k, v in (r["settings"] or {}).items()
                       if v is not None)
    return (f"<td>{media}<div class=\"meta\">seed {_text(r['seed'])} &middot; <a href=\"{_link(r['sidecar'])}\">"
            f"sidecar</a> &middot; {_text(r['status'])}</div><details><summary class=\"meta\">settings</summary>"
            f"<dl>{settings}</dl></details></td>")


def gallery_html(rows: list[dict[str, Any]], variants: list[str | None], *, title: str, version: str) -> str:
    """The page: one row per item (name, prompt, states), one column per variant (``--vary``), each cell the
    video with its seed, settings and sidecar; failed items show their error. ``rows`` as in
    :mod:`vstar.batch.summary`; their paths are relative to the folder of the page."""
    cells = {(r["index"], r["variant"]): r for r in rows}
    items = {r["index"]: r for r in sorted(rows, key=lambda r: r["index"])}
    head = "".join(f"<th>{_text(v)}</th>" for v in variants) if variants != [None] else "<th>video</th>"
    body = []
    for index, r in items.items():
        states = next((c["states"] for v in variants if (c := cells.get((index, v))) and c["states"]), None)
        listed = "<ol>" + "".join(f"<li>{_text(s)}</li>" for s in states) + "</ol>" if states else ""
        body.append(f"<tr><th class=\"item\"><div class=\"name\">{_text(r['name'])}</div>"
                    f"<div>{_text(r['prompt'])}</div>{listed}</th>"
                    + "".join(_cell(cells.get((index, v))) for v in variants) + "</tr>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"{GALLERY_MARKER} {_text(version)}\">\n<title>{_text(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{_text(title)}</h1>\n<table><thead><tr><th>item</th>{head}</tr></thead><tbody>\n"
            + "\n".join(body) + "\n</tbody></table></body></html>\n")
