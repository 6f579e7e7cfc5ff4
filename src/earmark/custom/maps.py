"""2-D maps of clip embeddings: a PNG and a self-contained interactive HTML page.

The embeddings (computed from a dataset, or read from a file written by ``earmark embed``) are
projected to 2-D with UMAP (``umap-learn``, cosine metric) or, where it is not installed, with
scikit-learn's t-SNE, after standardisation. The PNG colours points by label. The HTML page
holds everything it needs (no script, style or font from elsewhere): hovering a point shows its
file and label, clicking plays the clip, from its path relative to the page, or from inside the
page with ``--embed-audio``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from earmark.constants import DEFAULT_MODEL

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
]

log = logging.getLogger(__name__)


def project(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``x`` and the method used (``umap`` or ``tsne``)."""
    if len(x) < 3:
        raise ValueError(f"a map needs at least 3 clips, got {len(x)}")
    z = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    if method in ("auto", "umap"):
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            if method == "umap":
                raise ValueError(
                    "UMAP needs umap-learn (pip install 'earmark[custom]'); or use --method tsne"
                ) from None
            log.warning(
                "umap-learn is not installed (pip install 'earmark[custom]'): the map uses t-SNE"
            )
        else:
            reducer = umap.UMAP(
                n_neighbors=min(15, len(x) - 1), metric="cosine", random_state=seed, n_jobs=1
            )
            return np.asarray(reducer.fit_transform(z), dtype=np.float64), "umap"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    tsne = TSNE(2, perplexity=perplexity, random_state=seed, init="pca")
    return np.asarray(tsne.fit_transform(z), dtype=np.float64), "tsne"


def _colours(labels: list[str]) -> dict[str, str]:
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(labels)))}


def write_png(path: Path, xy: np.ndarray, labels: list[str], title: str) -> None:
    """Scatter plot coloured by label, with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from earmark.outputs import atomic_path

    colours = _colours(labels)
    fig, ax = plt.subplots(figsize=(9, 7))
    arr = np.array(labels)
    for label, colour in colours.items():
        pts = xy[arr == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, c=colour, label=label, alpha=0.85)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=1.5, loc="best", ncol=1 if len(colours) <= 15 else 2)
    fig.tight_layout()
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font:14px sans-serif;margin:16px;color:#222}}
#wrap{{position:relative;display:inline-block}}
svg{{border:1px solid #ccc;background:#fff}}
circle{{cursor:pointer;stroke:#fff;stroke-width:.5}}
circle:hover{{stroke:#000;stroke-width:2}}
#tip{{position:absolute;pointer-events:none;background:#222;color:#fff;padding:4px 6px;
border-radius:3px;font-size:12px;display:none;white-space:nowrap}}
#legend span{{display:inline-block;margin:2px 10px 2px 0}}
#legend i{{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}}
</style></head><body>
<h2>{title}</h2>
<p>Hover a point to see its file; click it to play the clip. <span id="now"></span></p>
<div id="legend"></div>
<div id="wrap"><svg id="map" width="900" height="680"></svg><div id="tip"></div></div>
<audio id="player" controls></audio>
<script id="data" type="application/json">{data}</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const svg = document.getElementById('map'), tip = document.getElementById('tip');
const player = document.getElementById('player'), now = document.getElementById('now');
const W = 900, H = 680, P = 20, NS = 'http://www.w3.org/2000/svg';
const xs = D.points.map(p => p.x), ys = D.points.map(p => p.y);
const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
const sx = v => P + (v - x0) / ((x1 - x0) || 1) * (W - 2 * P);
const sy = v => H - P - (v - y0) / ((y1 - y0) || 1) * (H - 2 * P);
const legend = document.getElementById('legend');
for (const [label, colour] of Object.entries(D.colours)) {{
  const s = document.createElement('span');
  s.innerHTML = '<i></i>'; s.firstChild.style.background = colour;
  s.appendChild(document.createTextNode(label)); legend.appendChild(s);
}}
D.points.forEach((p, i) => {{
  const c = document.createElementNS(NS, 'circle');
  c.setAttribute('cx', sx(p.x)); c.setAttribute('cy', sy(p.y)); c.setAttribute('r', 5);
  c.setAttribute('fill', D.colours[p.label]); c.dataset.index = i;
  c.addEventListener('mousemove', e => {{
    tip.textContent = p.label + ' \\u2014 ' + p.file; tip.style.display = 'block';
    const r = svg.getBoundingClientRect();
    tip.style.left = (e.clientX - r.left + 12) + 'px';
    tip.style.top = (e.clientY - r.top + 12) + 'px';
  }});
  c.addEventListener('mouseleave', () => {{ tip.style.display = 'none'; }});
  c.addEventListener('click', () => {{
    player.src = p.audio; player.play().catch(() => {{}});
    now.textContent = 'Playing: ' + p.file;
  }});
  svg.appendChild(c);
}});
</script></body></html>
"""


def _audio_url(file: str, html_dir: Path, embed: bool) -> str:
    path = Path(file)
    if embed:
        suffix = path.suffix.lower().lstrip(".")
        mime = {
            "mp3": "audio/mpeg",
            "ogg": "audio/ogg",
            "oga": "audio/ogg",
            "wav": "audio/wav",
            "flac": "audio/flac",
            "m4a": "audio/mp4",
            "opus": "audio/ogg",
        }.get(suffix, "audio/*")
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    try:
        rel = os.path.relpath(path.resolve(), html_dir.resolve())
    except ValueError:  # another drive (Windows)
        return path.resolve().as_uri()
    return "/".join(rel.split(os.sep))


def write_html(
    path: Path,
    xy: np.ndarray,
    files: list[str],
    labels: list[str],
    title: str,
    embed_audio: bool = False,
) -> None:
    """The interactive page (self-contained: inline data, style and script)."""
    from earmark.outputs import atomic_write_text, json_for_script

    points = [
        {
            "x": round(float(x), 4),
            "y": round(float(y), 4),
            "file": f,
            "label": lab,
            "audio": _audio_url(f, path.parent, embed_audio),
        }
        for (x, y), f, lab in zip(xy, files, labels, strict=True)
    ]
    data = json_for_script({"points": points, "colours": _colours(labels)})
    atomic_write_text(path, _PAGE.format(title=html.escape(title), data=data))


def make_map(
    data: str | Path,
    output: str | Path,
    method: str = "auto",
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    embed_audio: bool = False,
    log: Callable[[str], None] | None = None,
    dataset_args: Any = None,
) -> dict[str, Path]:
    """Map a dataset (embedded on the way, cached) or an embeddings file; returns the paths of
    the PNG, the HTML page and a CSV of the coordinates.

    ``output`` is a folder (created), which gets ``map.png``, ``map.html`` and ``map.csv``; a
    path ending in ``.png`` or ``.html`` names the files instead (``x.png``, ``x.html``,
    ``x.csv``)."""
    from earmark.custom.embeddings import Backbone, EmbeddingSet, ProgressPrinter, embed_dataset
    from earmark.outputs import atomic_write_text

    say = log or (lambda _m: None)
    source = Path(data)
    if source.is_file() and source.suffix.lower() in (".npz", ".parquet"):
        emb = EmbeddingSet.load(source)
    else:
        from earmark.custom.datasets import load_dataset
        from earmark.tagger import load_model

        kwargs = {}
        if dataset_args is not None:
            kwargs = {
                "min_per_class": dataset_args.min_per_class,
                "file_column": dataset_args.file_column,
                "label_column": dataset_args.label_column,
                "fold_column": dataset_args.fold_column,
            }
        dataset = load_dataset(source, **kwargs)
        say(dataset.format_summary())
        tagger = load_model(model)
        emb = embed_dataset(dataset, Backbone.from_tagger(tagger), progress=ProgressPrinter())
        for file, error in emb.failed:
            say(f"skipped {file}: {error}")
    xy, used = project(emb.embeddings, method, seed)
    out = Path(output)
    if out.suffix.lower() in (".png", ".html"):
        out = out.with_suffix("")
    else:
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} is a file; -o takes a folder (or a name ending in .png)")
        out = out / "map"
    out.parent.mkdir(parents=True, exist_ok=True)
    backbone = emb.meta.get("backbone", "")
    title = f"{source.name}: {len(emb)} clips, {used.upper()} of {backbone} embeddings"
    png, page, table = (out.with_name(out.name + s) for s in (".png", ".html", ".csv"))
    write_png(png, xy, emb.labels, title)
    write_html(page, xy, emb.files, emb.labels, title, embed_audio)
    rows = ["file,label,x,y"] + [
        f"{json.dumps(f)},{json.dumps(lab)},{x:.5f},{y:.5f}"
        for f, lab, (x, y) in zip(emb.files, emb.labels, xy, strict=True)
    ]
    atomic_write_text(table, "\n".join(rows) + "\n")
    return {"png": png, "html": page, "csv": table, "method": Path(used)}
