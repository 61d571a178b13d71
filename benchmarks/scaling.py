"""Step time and peak memory of one denoiser forward against the number of frames, whole and in chunks.

    python benchmarks/scaling.py [--model tiny-modelscope] [--frames 16 32 64 128 256] [--tar 64D1]
                                 [--chunks 16:64 4:16] [--rounds 3] [--out docs/scaling]

One forward is a CFG batch of 2 videos at the model's default size, timestep 500, with TAR (``--tar none``
for none). Settings: the whole forward, and for each ``--chunks FRAMES:SEQUENCES`` the forward inside
:func:`vstar.chunking.chunked_execution` (spatial layers on FRAMES of the ``2*frames`` images at a time,
temporal transformer blocks on SEQUENCES of the ``2*h*w`` sequences at a time). Every round runs the
settings in turn after a warm-up round (medians); peak memory as in ``tar_overhead.py``. Writes OUT.csv and
OUT.png (seconds and peak MiB per forward against frames, one line per setting).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from measure import MiB, interleaved_medians, machine, peak_bytes, setup, write_csv
from tar_overhead import backbone_subject

from vstar import apply_tar
from vstar.chunking import chunked_execution


def chunk_setting(spec: str) -> tuple[int, int]:
    frames, _, sequences = spec.partition(":")
    try:
        return int(frames), int(sequences)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--chunks takes FRAMES:SEQUENCES, e.g. 16:1024, got {spec!r}") from None


def in_chunks(model: torch.nn.Module, call: Callable[[], object], frames: int, sequences: int) -> Callable[[], object]:
    def run() -> object:
        with chunked_execution(model, frames=frames, sequences=sequences):
            return call()
    return run


def plot(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for setting in dict.fromkeys(row["setting"] for row in rows):
        mine = [row for row in rows if row["setting"] == setting]
        for ax, field in zip(axes, ("seconds", "peak_mib"), strict=True):
            ax.plot([row["frames"] for row in mine], [row[field] for row in mine], marker="o", label=setting)
    frames = sorted({row["frames"] for row in rows})
    for ax, label in zip(axes, ("seconds per forward", "peak MiB per forward"), strict=True):
        ax.set(xlabel="frames", ylabel=label, yscale="log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(frames, [str(f) for f in frames])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-modelscope")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--tar", default="64D1", help="TAR preset, or none")
    parser.add_argument("--chunks", type=chunk_setting, nargs="*", default=[(16, 64), (4, 16)])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="scaling", help="writes OUT.csv and OUT.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    subject = backbone_subject(args.model, args.device, torch.float32)
    if args.tar != "none":
        apply_tar(subject.model, args.tar)
    title = f"{subject.name}, TAR {args.tar}, CFG batch of 2; {machine()}"
    print(title)
    print(f"{'frames':>6} {'setting':>14} {'s/forward':>10} {'peak MiB':>10}")
    rows = []
    for num_frames in args.frames:
        call = subject.make_call(num_frames)
        runs = {"whole": call} | {f"chunks {f}:{s}": in_chunks(subject.model, call, f, s) for f, s in args.chunks}
        with torch.no_grad():
            times = interleaved_medians(runs, args.rounds, warmup=1, device=args.device)
            peaks = {name: peak_bytes(run, args.device) for name, run in runs.items()}
        for name in runs:
            rows.append({"model": subject.name, "tar": args.tar, "frames": num_frames, "setting": name,
                         "seconds": times[name], "peak_mib": peaks[name] / MiB})
            print(f"{num_frames:>6} {name:>14} {times[name]:>10.4f} {peaks[name] / MiB:>10.1f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, str(out.with_suffix(".csv")))
    with contextlib.suppress(ImportError):
        plot(rows, title, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
