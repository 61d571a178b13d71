"""What a batch reports at the end: one row per item and variant (name, status, seconds, peak memory, output,
sidecar, error, and what the video shows), the table printed, and ``summary.json``."""

from __future__ import annotations

from typing import Any

STATUSES = ("done", "skipped", "failed")  # made now, made by an earlier run with the same settings, failed


def row(item: Any, variant: str | None, status: str, *, seconds: float = 0.0, peak_memory_gib: float | None = None,
        output: str | None = None, sidecar: str | None = None, error: str | None = None,
        states: list[str] | None = None, seed: int | None = None, settings: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    """The summary row of :class:`~vstar.batch.items.BatchItem` ``item`` under ``variant`` (its sub-folder);
    ``output`` and ``sidecar`` are relative to the batch folder."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return {"name": item.name, "index": item.index, "line": item.line, "variant": variant, "status": status,
            "seconds": round(seconds, 3), "peak_memory_gib": peak_memory_gib, "output": output, "sidecar": sidecar,
            "error": error, "prompt": item.prompt, "states": states, "seed": seed, "settings": settings}


def ordered(rows: list[dict[str, Any]], variants: list[str | None]) -> list[dict[str, Any]]:
    """``rows`` (gathered from every process, in any order) by variant, then by global index."""
    rank = {variant: i for i, variant in enumerate(variants)}
    return sorted(rows, key=lambda r: (rank[r["variant"]], r["index"]))


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows have each status."""
    return {status: sum(r["status"] == status for r in rows) for status in STATUSES}


def summary_record(rows: list[dict[str, Any]], *, prompts: str, model: str, processes: int,
                   variants: list[str | None]) -> dict[str, Any]:
    """The content of ``summary.json`` (vstar adds its version and ``kind: batch``)."""
    return {"prompts": prompts, "model": model, "processes": processes, "variants": variants,
            "counts": counts(rows), "items": rows}


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows``: one line per item and variant, and the counts."""
    header = f"{'item':<32} {'variant':<20} {'status':<8} {'seconds':>8} {'peak GiB':>8}  output / error"
    lines = [header, "-" * len(header)]
    for r in rows:
        memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "-"
        detail = r["error"] if r["status"] == "failed" else r["output"]
        lines.append(f"{r['name'][:32]:<32} {(r['variant'] or '-')[:20]:<20} {r['status']:<8} {r['seconds']:>8.1f} "
                     f"{memory:>8}  {detail}")
    lines.append(", ".join(f"{n} {status}" for status, n in counts(rows).items()))
    return "\n".join(lines)
