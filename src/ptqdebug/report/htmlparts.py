"""Small pieces of the HTML report: escaping, number formatting, table cells, embedded images."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CURVE_COLORS", "embed_image", "esc", "fmt", "name_html", "num", "num_td", "text_td"]

#: Same colours, in the same order, as the curves of ``ptqdebug.plots`` (Tableau 10).
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".webp": "image/webp", ".svg": "image/svg+xml"}
CAUSES = {"weight": "weight quantization", "activation": "activation quantization",
           "both": "weight and activation quantization", "none": "no significant loss",
           "unknown": "not measured: weights stored as integers"}
TYPE_TITLES = {"weight": "Weight calibration nodes", "activation": "Activation calibration nodes", "node": "Ordinary nodes"}
SERIES = {"input": "input", "float": "float", "quantized": "quantized", "error": "error"}


# --------------------------------------------------------------------------- small helpers

def esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def name_html(x: object) -> str:
    """An escaped name with line-break opportunities after ``/``, ``_``, ``.`` and ``:``."""
    return re.sub(r"([/_.:])", r"\1<wbr>", esc(x))


def count(n: object, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 ("1 sample", "3 samples"), escaped."""
    return f"{esc(n)} {noun if n == 1 else plural or noun + 's'}"


def get(d: object, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, Mapping) else default


def mapping(d: object, key: str) -> Mapping[str, Any]:
    """``d[key]`` if it is a mapping, else an empty one (untrusted input: anything can be anywhere)."""
    v = get(d, key)
    return v if isinstance(v, Mapping) else {}


def as_list(x: object) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def num(x: object) -> float | None:
    """A number from the results: floats, ints, or the strings "nan", "inf", "-inf"; else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x.strip())
        except ValueError:
            return None
    return None


def fmt(x: object, digits: int = 6, sign: bool = False) -> str:
    """6 significant digits; never rounds a value that is not 1 to "1" (cosines near 1 matter)."""
    v = num(x)
    if v is None:
        return "–"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    s = f"{v:+.{digits}g}" if sign else f"{v:.{digits}g}"
    d = digits
    while float(s) != v and abs(float(s)) == 1.0 and d < 12:
        d += 1
        s = f"{v:+.{d}g}" if sign else f"{v:.{d}g}"
    return s


def sortkey(v: float | None) -> str:
    if v is None:
        return ""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def num_td(x: object, extra: str = "", sign: bool = False) -> str:
    v = num(x)
    bad = v is not None and not math.isfinite(v)
    cls = "num nf" if bad else "num"
    return f'<td class="{cls}{extra}" data-v="{sortkey(v)}">{esc(fmt(x, sign=sign))}</td>'


def text_td(x: object, cls: str = "") -> str:
    """A text cell; a ``name`` cell gets line-break opportunities (sorting uses ``data-v``)."""
    c = f' class="{cls}"' if cls else ""
    if "name" in cls.split():
        return f'<td{c} data-v="{esc(x)}">{name_html(x)}</td>'
    return f"<td{c}>{esc(x)}</td>"


def safe_rel(rel: object) -> str | None:
    """A relative path inside save_dir (no scheme, no absolute path, no ``..``), else None."""
    if not isinstance(rel, str) or not rel or ":" in rel or rel.startswith(("/", "\\")):
        return None
    parts = rel.replace("\\", "/").split("/")
    return None if ".." in parts else "/".join(p for p in parts if p not in ("", "."))


def embed_image(save_dir: Path, rel: object) -> str | None:
    """The file as a ``data:`` URI, only if it is an image inside ``save_dir``."""
    clean = safe_rel(rel)
    if clean is None:
        return None
    mime = MIME.get(Path(clean).suffix.lower())
    root = save_dir.resolve()
    path = (root / clean).resolve()
    if mime is None or root not in path.parents or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def img_tag(save_dir: Path, rel: object, alt: str) -> str:
    uri = embed_image(save_dir, rel)
    if uri is None:
        return f'<p class="missing">image not available: <code>{esc(rel)}</code></p>' if rel else ""
    return f'<img src="{uri}" alt="{esc(alt)}">'


def table(head: Sequence[tuple[str, str]], rows: Sequence[str], cls: str = "", caption: str = "") -> str:
    """``head``: (label html, "num"/"text"); ``rows``: ``<tr>`` html."""
    ths = "".join(f'<th scope="col" data-type="{t}"{" class=num" if t == "num" else ""}>{h}</th>' for h, t in head)
    cap = f"<caption class=small>{caption}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="{cls}">{cap}<thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')
