"""``vstar evaluate DIR [DIR...]``: the measurements of every video of batch folders, their mean and standard
deviation per folder, and paired differences between folders on the items they share (so "does TAR make
these 30 prompts more dynamic" is one table). Items are the generation sidecars of a folder whose video is
there, by name; a folder of ``--vary`` sub-folders stands for its sub-folders."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vstar.outputs import FRAMES_MARKER, json_kind, read_json_object

# One number per video: how much it moves and changes (higher: more dynamic), and for each similarity metric
# the similarity of its first and last frames (lower: more change over the whole video).
SCALARS = ("flicker", "flow_magnitude", "dynamic_degree", "change_from_first")


def folder_videos(folder: Path) -> dict[str, Path]:
    """The videos of a batch folder by item name (the stem of their sidecar), in name order."""
    videos = {}
    for sidecar in sorted(folder.glob("*.json")):
        record = read_json_object(sidecar)
        if record is not None and json_kind(record) == "generation" and isinstance(record.get("output"), str):
            video = folder / record["output"]
            if video.exists():
                videos[sidecar.stem] = video
    return videos


def is_batch_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of generations with sidecars (or of ``--vary`` sub-folders of them), not a
    folder of PNG frames."""
    if not path.is_dir() or (path / FRAMES_MARKER).exists():
        return False
    return bool(folder_videos(path)) or any(sub.is_dir() and folder_videos(sub) for sub in path.iterdir())


def batch_folders(paths: Sequence[Path]) -> dict[str, dict[str, Path]]:
    """Label (the folder's path) -> its videos by item name (:func:`folder_videos`, read once) for the given batch
    folders; one without videos of its own but with sub-folders that have some (a ``--vary`` batch) stands for
    those sub-folders (labelled ``DIR/SUB``, in the order of ``--vary``)."""
    folders: dict[str, dict[str, Path]] = {}
    for path in paths:
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; give batch folders (vstar batch --out-dir) or videos")
        found = {str(path): folder_videos(path)}
        if not found[str(path)]:
            record = read_json_object(path / "summary.json") or {}
            order = [v for v in record.get("variants") or [] if isinstance(v, str)] if json_kind(record) == "batch" else []
            subs = {sub: folder_videos(sub) for sub in path.iterdir() if sub.is_dir()}
            ranked = sorted((sub for sub, videos in subs.items() if videos),
                            key=lambda sub: (order.index(sub.name) if sub.name in order else len(order), sub.name))
            found = {str(path / sub.name): subs[sub] for sub in ranked} or found
        for label, videos in found.items():
            if not videos:
                raise ValueError(f"{label} holds no videos with vstar sidecars; give a vstar batch --out-dir")
            if label in folders:
                raise ValueError(f"{label} is given twice; give each folder once")
            folders[label] = videos
    return folders


def scalars(measured: dict[str, Any]) -> dict[str, float]:
    """The numbers of :data:`SCALARS` and ``<metric>_first_last`` of one :func:`~vstar.analysis.evaluation.evaluate_video`."""
    values = {key: measured[key] for key in SCALARS if key != "change_from_first"}
    values["change_from_first"] = measured["change_from_first"][-1]
    values |= {f"{metric}_first_last": matrix[0][-1] for metric, matrix in measured["similarity"].items()}
    return {key: float(value) for key, value in values.items()}


def _stats(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and count (None for an empty list: two folders with no item in common)."""
    n = len(values)
    if not n:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def compare(rows: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """``rows``: folder label -> item name -> scalars. The aggregate per folder (mean, sample standard
    deviation, count per scalar), the paired differences of every later folder minus the first on the items
    both have, and the items each folder lacks (of those any folder has)."""
    labels = list(rows)
    keys = list(next(iter(next(iter(rows.values())).values())))
    aggregate = {label: {k: _stats([v[k] for v in items.values()]) for k in keys} for label, items in rows.items()}
    base = labels[0]
    differences = {}
    for label in labels[1:]:
        shared = [name for name in rows[base] if name in rows[label]]
        differences[f"{label} - {base}"] = {
            k: _stats([rows[label][name][k] - rows[base][name][k] for name in shared]) for k in keys}
    every = sorted(set().union(*rows.values()))
    missing = {label: [name for name in every if name not in items] for label, items in rows.items()}
    return {"aggregate": aggregate, "differences": differences, "missing": {k: v for k, v in missing.items() if v}}


def comparison_table(comparison: dict[str, Any]) -> str:
    """The aggregate (``mean ± std``, a column per folder) and the paired differences as plain text."""
    columns = {**comparison["aggregate"], **comparison["differences"]}
    keys = list(next(iter(columns.values())))
    width = max(len(k) for k in keys) + 2
    cells = {label: [f"{s[k]['mean']:.4g} ± {s[k]['std']:.2g} (n={s[k]['n']})" if s[k]["n"] else "-" for k in keys]
             for label, s in columns.items()}
    widths = {label: max(len(label), *(len(c) for c in cs)) + 2 for label, cs in cells.items()}
    lines = ["".ljust(width) + "".join(label.ljust(widths[label]) for label in cells)]
    lines += [key.ljust(width) + "".join(cells[label][i].ljust(widths[label]) for label in cells)
              for i, key in enumerate(keys)]
    lines += [f"missing in {label}: {', '.join(names)}" for label, names in comparison["missing"].items()]
    return "\n".join(line.rstrip() for line in lines)


def rows_csv(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """One CSV line per folder and item: ``folder, item`` and the scalars."""
    keys = list(next(iter(next(iter(rows.values())).values())))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["folder", "item", *keys])
    for label, items in rows.items():
        for name, values in items.items():
            writer.writerow([label, name, *(repr(values[k]) for k in keys)])
    return out.getvalue()


def comparison_figure(comparison: dict[str, Any]) -> Any:
    """A bar per folder (mean with a standard-deviation whisker) in a panel per scalar."""
    from matplotlib.figure import Figure

    aggregate = comparison["aggregate"]
    labels = list(aggregate)
    keys = list(next(iter(aggregate.values())))
    figure = Figure(figsize=(2.6 * len(keys), 3.2), layout="constrained")
    for ax, key in zip(figure.subplots(1, len(keys), squeeze=False)[0], keys, strict=True):
        ax.bar(range(len(labels)), [aggregate[label][key]["mean"] for label in labels],
               yerr=[aggregate[label][key]["std"] for label in labels], color=[f"C{i}" for i in range(len(labels))],
               capsize=3)
        ax.set_xticks(range(len(labels)), [Path(label).name for label in labels], rotation=30, ha="right",
                      fontsize=8)
        ax.set_title(key, fontsize=9)
    return figure
