"""``vstar batch PROMPTS --out-dir DIR``: a video per prompt with one model load, resumable, split across the
processes of ``torchrun`` / ``accelerate launch``, with ``summary.json`` and an ``index.html`` gallery."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from vstar.cli.common import (
    CondFpsOption,
    DeviceOption,
    DtypeOption,
    FpsOption,
    FrameChunkOption,
    FramesOption,
    GuidanceOption,
    HeightOption,
    InterpolationOption,
    LlmBackendOption,
    LlmBaseUrlOption,
    LlmModelOption,
    MaxMemoryOption,
    ModelOption,
    ModelPathOption,
    NegativePromptOption,
    NoMemoryCheckOption,
    NoTarOption,
    NoVspOption,
    OffloadOption,
    QuietOption,
    ReplaceAttentionOption,
    StatesOption,
    StepsOption,
    StyleOption,
    TarMaxModeOption,
    TarOption,
    TarReferenceMetricOption,
    TarReferenceOption,
    TarStepFractionOption,
    TarStrengthOption,
    UpscaleOption,
    WidthOption,
    asked_synopsis,
    attention_changes,
    check_synopsis_options,
    error_code,
    error_message,
    fail,
    frame_chunk_option,
    friendly_errors,
    generation_config,
    given_synopsis,
    load_pipeline,
    memory_plan,
    recorded_command,
    run_device,
    setting_flags,
    silence_progress_bars,
    tar_flags,
    write_generation,
)

TAR_OPTIONS = ("max_mode", "strength", "step_fraction")


@dataclass
class Job:
    """One video of the batch: an item under a variant, with its checked settings and where it goes."""

    item: Any  # vstar.batch.BatchItem
    variant: str | None
    where: str  # PROMPTS:LINE, the prefix of this job's errors
    config: Any  # vstar.config.GenerationConfig
    upscale: int
    frame_chunk: int | None
    out: Path
    given: dict[str, Any] | None  # the synopsis when it needs no LLM (states in the file, --no-vsp), as generate's
    skip: bool = False


@contextmanager
def located(where: str) -> Iterator[None]:
    """Errors raised in the block name ``where`` (``PROMPTS:LINE``) first, keeping their kind (and exit code)."""
    try:
        yield
    except Exception as err:
        if error_code(err) is None:
            raise
        try:
            located_err = type(err)(f"{where}: {error_message(err)}")
        except Exception:
            located_err = ValueError(f"{where}: {error_message(err)}")
        raise located_err from None


def item_flags(settings: dict[str, Any], flags: dict[str, Any], tars: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An item's own settings over the batch's flags: the ``flags``, ``tar_flags`` and attention changes of
    :func:`~vstar.cli.common.generation_config`."""
    flags = flags | {k: v for k, v in settings.items() if k in flags}
    tars = dict(tars)
    if "tar" in settings:
        off = settings["tar"] is None or settings["tar"].strip().lower() in ("off", "none")
        tars |= {"off": off, "preset": None if off else settings["tar"]}
    tars |= {k: settings[f"tar_{k}"] for k in TAR_OPTIONS if f"tar_{k}" in settings}
    attention = {"replace_attention": settings["replace_attention"]} if "replace_attention" in settings else {}
    return flags, tars, attention


def expected_record(job: Job, model: str, model_path: Path | None) -> dict[str, Any]:
    """What the sidecar of ``job`` records, besides its settings, when an earlier run made it with the same
    settings."""
    expected = {"prompt": job.item.prompt, "model": model, "model_path": str(model_path) if model_path else None,
                "upscale": job.upscale}
    return expected | ({"synopsis": job.given["states"]} if job.given is not None else {})


def made_before(job: Job, model: str, model_path: Path | None, overwrite: bool) -> bool:
    """Whether an earlier run made ``job``'s video with the same settings (its sidecar names the video with its
    sha256). A video made with other settings is refused unless ``overwrite``."""
    from vstar.io import sidecar_path
    from vstar.outputs import file_sha256, read_json_object

    sidecar = sidecar_path(job.out)
    record = read_json_object(sidecar) if job.out.is_file() and sidecar.is_file() else None
    if record is None or record.get("files", {}).get(job.out.name) != file_sha256(job.out):
        return False
    differs = [f"{key} {record.get(key)!r} -> {value!r}" for key, value in expected_record(job, model, model_path).items()
               if record.get(key) != value]
    recorded = record.get("settings") or {}
    differs += [f"{key} {recorded.get(key)!r} -> {value!r}" for key, value in job.config.to_dict().items()
                if recorded.get(key) != value]
    if differs and not overwrite:
        raise FileExistsError(f"{job.out} was made with other settings ({'; '.join(differs)}); pass --overwrite to "
                              "make it again, or choose another --out-dir")
    return not differs


@friendly_errors
def batch(
    prompts: Annotated[Path, typer.Argument(help="Prompt file: the paper's prompt-list JSON, JSONL (one object per line: prompt, optional synopsis, seed, name and settings such as num_frames or tar), or text (one prompt per line).")],
    out_dir: Annotated[Path, typer.Option(help="Folder for the videos, their sidecars, summary.json and index.html.")],
    vary: Annotated[list[str] | None, typer.Option(help="Run every item under each value, into sub-folders, e.g. --vary tar=off,64D1,64D1_32D8 (repeat for a grid).")] = None,
    continue_on_error: Annotated[bool, typer.Option("--continue-on-error", help="Record a failed item and go on (default: stop at the first failure).")] = False,
    video_format: Annotated[str, typer.Option("--format", help="Video files: mp4 or gif.")] = "mp4",
    seed: Annotated[int, typer.Option(help="Item i's seed is SEED + i unless the item gives its own.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Make again the videos that an earlier run made with other settings.")] = False,
    no_vsp: NoVspOption = False,
    llm_backend: LlmBackendOption = None,
    llm_model: LlmModelOption = None,
    llm_base_url: LlmBaseUrlOption = None,
    states: StatesOption = None,
    style: StyleOption = None,
    model: ModelOption = None,
    model_path: ModelPathOption = None,
    frames: FramesOption = None,
    steps: StepsOption = None,
    guidance: GuidanceOption = None,
    negative_prompt: NegativePromptOption = None,
    height: HeightOption = None,
    width: WidthOption = None,
    tar: TarOption = None,
    no_tar: NoTarOption = False,
    tar_max_mode: TarMaxModeOption = None,
    tar_strength: TarStrengthOption = None,
    tar_step_fraction: TarStepFractionOption = None,
    tar_reference: TarReferenceOption = None,
    tar_reference_metric: TarReferenceMetricOption = None,
    replace_attention: ReplaceAttentionOption = None,
    interpolation: InterpolationOption = None,
    fps: FpsOption = None,
    upscale: UpscaleOption = None,
    cond_fps: CondFpsOption = None,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    no_memory_check: NoMemoryCheckOption = False,
    offload: OffloadOption = None,
    frame_chunk: FrameChunkOption = None,
    max_memory: MaxMemoryOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate a video for every prompt of a file, loading the model once.

    Every item is checked (and every synopsis made) before the first video, so a bad entry stops the batch at
    once with its line number. Videos made before with the same settings are skipped, so running the command
    again continues a killed batch. Under torchrun or accelerate launch each process makes the items whose
    index is its rank modulo the number of processes; the first writes summary.json and index.html.
    """
    from vstar.backbones import DEFAULT_MODEL, get_spec
    from vstar.batch import parse_vary, processes, read_items
    from vstar.resources import check_max_memory

    if video_format not in ("mp4", "gif"):
        raise ValueError(f"--format must be mp4 or gif, got {video_format!r}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if quiet:
        silence_progress_bars()
    llm = {k: v for k, v in (("backend", llm_backend), ("model", llm_model), ("base_url", llm_base_url))
           if v is not None}
    check_synopsis_options(None, None, None, no_vsp, {f"--llm-{k.replace('_', '-')}": v for k, v in llm.items()},
                           states, style)
    items = read_items(prompts)
    variants = parse_vary(list(vary or []))
    model = model or DEFAULT_MODEL
    spec = get_spec(model)
    chunk = frame_chunk_option(frame_chunk)
    spec.defaults.check_frame_chunk(chunk, model)
    check_max_memory(max_memory, "--max-memory")
    procs = processes(device)
    torch_device, torch_dtype = run_device(procs.device or device, dtype, offload)
    flags = setting_flags(frames=frames, height=height, width=width, steps=steps, guidance=guidance,
                          negative_prompt=negative_prompt, interpolation=interpolation, cond_fps=cond_fps, fps=fps,
                          seed=None)
    tars = tar_flags(tar, no_tar, tar_max_mode, tar_strength, tar_step_fraction)
    attention = attention_changes(replace_attention, tar_reference, tar_reference_metric)
    shared = {"flags": flags, "tars": tars, "attention": attention, "model": model, "base_seed": seed,
              "upscale": upscale, "no_vsp": no_vsp, "style": style, "out_dir": out_dir, "suffix": video_format,
              "memory": {"device": torch_device, "dtype": torch_dtype, "max_memory": max_memory, "offload": offload,
                         "frame_chunk": chunk, "check": not no_memory_check, "quiet": True}}
    # every process checks every item, so a bad entry stops them all before any work
    jobs = [plan(item, variant, prompts, **shared) for variant in variants for item in items]
    mine = [job for job in jobs if procs.owns(job.item.index)]
    reports = check_reports(out_dir, procs.main)
    for job in mine:
        with located(job.where):
            job.skip = made_before(job, model, model_path, overwrite)
            if not job.skip:
                check_outputs(job, overwrite)
    todo = [job for job in mine if not job.skip]
    sources = synopses(todo, llm, states, style)
    rows = run(todo, sources, model=model, model_path=model_path, device=torch_device, dtype=torch_dtype,
               offload=offload, overwrite=overwrite, continue_on_error=continue_on_error, quiet=quiet,
               procs=procs, out_dir=out_dir)
    rows += [skipped_row(job, out_dir) for job in mine if job.skip]
    everything = procs.gather(rows)
    if procs.main:
        write_reports(everything, reports, prompts=prompts, model=model, processes=procs.world,
                      variants=[v.folder for v in variants], quiet=quiet)
    failed = [r for r in (everything if procs.main else rows) if r["status"] == "failed"]
    missing = len(jobs) - len(everything)
    if failed or missing:
        raise fail(f"{len(failed)} of {len(jobs)} videos failed" + (f", {missing} not made" if missing else "")
                   + (f"; see {reports[0]}" if procs.main else ""), code=1)


def plan(item: Any, variant: Any, prompts: Path, *, flags: dict[str, Any], tars: dict[str, Any],
         attention: dict[str, Any], model: str, base_seed: int, upscale: int | None, no_vsp: bool,
         style: str | None, out_dir: Path, suffix: str, memory: dict[str, Any]) -> Job:
    """The checked job of ``item`` under ``variant``: its settings built by generate's function, its states
    when known, the memory estimate, its output path."""
    from vstar.backbones import get_spec
    from vstar.batch import item_seed

    where = f"{prompts}:{item.line}"
    with located(where):
        clash = sorted(set(item.settings) & set(variant.settings))
        if clash:
            raise ValueError(f"the item sets {', '.join(clash)}, which --vary varies; drop one")
        settings = item.settings | {k: v for k, v in variant.settings.items() if k != "seed"}
        item_config, item_tars, item_attention = item_flags(settings, flags, tars)
        item_config["seed"] = item_seed(item, variant.settings.get("seed", base_seed))
        config = generation_config(item_config, item_tars, {}, model, attention | item_attention)
        scale = settings.get("upscale", upscale if upscale is not None else 1)
        if scale < 1:
            raise ValueError(f"upscale must be >= 1, got {scale}")
        given = given_synopsis(item.prompt, list(item.states) if item.states is not None else None, None, None,
                               no_vsp, style)
        if given is not None:
            get_spec(model).defaults.check_states_fit(len(given["states"]), config.num_frames,
                                                      "give the item more num_frames or fewer states")
        chunk = memory_plan(model, config, upscale=scale, **memory)
    folder = out_dir / variant.folder if variant.folder else out_dir
    return Job(item, variant.folder, where, config, scale, chunk, folder / f"{item.name}.{suffix}", given)


def check_outputs(job: Job, overwrite: bool) -> None:
    """Refuse before any work a video or sidecar that vstar may not write (not vstar's, a folder, a link)."""
    from vstar.io import sidecar_path
    from vstar.outputs import check_sidecar_of, check_writable

    sidecar = sidecar_path(job.out)
    check_writable(sidecar, overwrite, "sidecar")
    check_sidecar_of(sidecar, job.out)
    check_writable(job.out, overwrite, "video", sidecar)


def check_reports(out_dir: Path, main: bool) -> tuple[Path, Path]:
    """``summary.json`` and ``index.html`` of ``out_dir``; the main process refuses, before any work, files of
    those names that an earlier batch did not write (its own it replaces)."""
    from vstar.outputs import check_writable

    reports = (out_dir / "summary.json", out_dir / "index.html")
    if main:
        check_writable(reports[0], True, "batch")
        check_writable(reports[1], True, "gallery")
    return reports


def synopses(jobs: list[Job], llm: dict[str, Any], num_states: int | None,
             style: str | None) -> dict[int, dict[str, Any]]:
    """The synopsis of every item of ``jobs`` by global index (given, or asked once per item whatever the
    variants; answers are cached), before the first video: an LLM that fails stops the batch at once."""
    sources: dict[int, dict[str, Any]] = {}
    for job in jobs:
        if job.item.index in sources:
            continue
        with located(job.where):
            sources[job.item.index] = job.given if job.given is not None else asked_synopsis(
                job.item.prompt, llm, num_states, style, quiet=True)
    return sources


def run(jobs: list[Job], sources: dict[int, dict[str, Any]], *, model: str, model_path: Path | None, device: Any,
        dtype: Any, offload: str | None, overwrite: bool, continue_on_error: bool, quiet: bool, procs: Any,
        out_dir: Path) -> list[dict[str, Any]]:
    """Make the videos of ``jobs`` with one model load; a row per job. A failure ends the loop unless
    ``continue_on_error``."""
    from tqdm.auto import tqdm

    from vstar.backbones.weights_identity import weights_identity
    from vstar.batch import row
    from vstar.io import sidecar_path
    from vstar.outputs import claim_outputs
    from vstar.resources import peak_memory, reset_peak_memory

    if not jobs:
        return []
    pipe = load_pipeline(model, model_path, device, dtype, offload, quiet or not procs.main,
                         f" ({procs.world} processes)" if procs.world > 1 else "")
    weights = weights_identity(pipe.backbone)
    command = recorded_command(sys.argv)
    rows = []
    bar = tqdm(jobs, unit="video", desc=f"rank {procs.rank}" if procs.world > 1 else "batch",
               disable=quiet or not procs.main, dynamic_ncols=True)
    for job in bar:
        source = sources[job.item.index]
        start = time.perf_counter()
        reset_peak_memory(pipe.device)
        sidecar = sidecar_path(job.out)
        try:
            with claim_outputs(job.out, sidecar):
                result = pipe(source["prompt"], source["states"], config=job.config, progress=False,
                              check_memory=False, frame_chunk=job.frame_chunk)
                write_generation(result, job.out, config=job.config, source=source, model=model,
                                 model_path=model_path, pipe=pipe, upscale=job.upscale, weights=weights,
                                 overwrite=overwrite, command=command)
        except Exception as err:
            if not continue_on_error and error_code(err) is None:
                raise
            message = f"{job.where}: {error_message(err) if error_code(err) else f'{type(err).__name__}: {err}'}"
            typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
            rows.append(row(job.item, job.variant, "failed", seconds=time.perf_counter() - start, error=message,
                            states=source["states"], seed=job.config.seed, settings=job.config.to_dict()))
            if continue_on_error:
                continue
            break
        rows.append(row(job.item, job.variant, "done", seconds=time.perf_counter() - start,
                        peak_memory_gib=round(peak_memory(pipe.device) / 2**30, 3),
                        output=job.out.relative_to(out_dir).as_posix(),
                        sidecar=sidecar.relative_to(out_dir).as_posix(), states=result.states,
                        seed=job.config.seed, settings=job.config.to_dict()))
    bar.close()
    return rows


def skipped_row(job: Job, out_dir: Path) -> dict[str, Any]:
    """The row of a video an earlier run made with the same settings (its states from its sidecar)."""
    from vstar.batch import row
    from vstar.io import sidecar_path
    from vstar.outputs import read_json_object

    sidecar = sidecar_path(job.out)
    record = read_json_object(sidecar) or {}
    return row(job.item, job.variant, "skipped", output=job.out.relative_to(out_dir).as_posix(),
               sidecar=sidecar.relative_to(out_dir).as_posix(), states=record.get("synopsis"),
               seed=job.config.seed, settings=job.config.to_dict())


def write_reports(rows: list[dict[str, Any]], reports: tuple[Path, Path], *, prompts: Path, model: str,
                  processes: int, variants: list[str | None], quiet: bool) -> None:
    """Print the table; write ``summary.json`` and ``index.html`` together (both or neither)."""
    import json

    import vstar
    from vstar.batch import gallery_html, summary_record, summary_table
    from vstar.batch.summary import ordered
    from vstar.outputs import claim_outputs, staged_result

    rows = ordered(rows, variants)
    typer.echo(summary_table(rows), err=quiet)
    record = {"vstar_version": vstar.__version__, "kind": "batch",
              **summary_record(rows, prompts=str(prompts), model=model, processes=processes, variants=variants)}
    page = gallery_html(rows, variants, title=f"vstar batch: {prompts.name} ({model})", version=vstar.__version__)
    with claim_outputs(*reports), staged_result(overwrite=True) as staged:
        staged.stage(reports[0], "batch").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        staged.stage(reports[1], "gallery").write_text(page, encoding="utf-8")
    typer.echo(f"wrote {reports[0]} and {reports[1]}", err=quiet)

