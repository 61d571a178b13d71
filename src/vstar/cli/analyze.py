"""``vstar analyze``: record the temporal attention of a real video and/or a generation, per layer and level,
with band scores and heatmaps (paper figures 4, 10, S.10)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vstar.cli.common import attention_changes, friendly_errors, generation_config, load_model, write_json

if TYPE_CHECKING:
    from vstar.outputs import OutputKind


def parse_sigmas(text: str) -> list[float]:
    """``"1,2,4"`` -> ``[1.0, 2.0, 4.0]`` (``--plot-band``)."""
    try:
        sigmas = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sigmas = []
    if not sigmas or not all(s > 0 for s in sigmas):
        raise ValueError(f"--plot-band takes positive sigmas separated by commas, e.g. 1,2,4,8,16; got {text!r}")
    return sigmas


# A band panel is about 340 pixels wide in bands.png (150 dpi): past 256 frames a frame gets less than a pixel and
# a band a few frames wide no longer shows (while the F x F matrices grow as F**2: 29 GB at 60000 frames).
MAX_BAND_FRAMES = 256


def check_band_frames(num_frames: int) -> None:
    """Refuse plotting TAR's ``(F, F)`` bands (``--plot-band``) for more than :data:`MAX_BAND_FRAMES` frames."""
    if num_frames > MAX_BAND_FRAMES:
        raise ValueError(f"--plot-band with --frames {num_frames}: the bands are unreadable past {MAX_BAND_FRAMES} "
                         f"frames (a frame gets less than a pixel); plot them with --frames {MAX_BAND_FRAMES} or "
                         "fewer (in a run of their own)")


def attention_summary(recorder: Any) -> dict[str, Any]:
    """A recorder's maps per level (the paper's level names) and per layer, with their band scores."""
    from vstar.analysis.scores import band_score, diagonal_mass
    from vstar.tar import level_name

    def entry(matrix: Any) -> dict[str, Any]:
        return {"map": matrix.tolist(), "band_score": float(band_score(matrix)),
                "diagonal_mass": float(diagonal_mass(matrix))}

    return {"levels": {level_name(level, recorder.unit): entry(m) for level, m in recorder.by_level().items()},
            "layers": {name: {"level": recorder.levels[name], **entry(m)} for name, m in recorder.maps.items()}}


@friendly_errors
def analyze(
    video: Annotated[Path | None, typer.Argument(help="A real video (.mp4, .gif or a folder of PNG frames).")] = None,
    model: Annotated[str | None, typer.Option(help="Base model (see `vstar models`); default videocrafter2.")] = None,
    prompt: Annotated[str, typer.Option(help="The real video's text condition (default: the empty prompt).")] = "",
    timestep: Annotated[int, typer.Option(help="Noise the real video to this training timestep (default 400 of 1000).")] = 400,
    frames: Annotated[int | None, typer.Option(help="Frames to analyse (evenly picked from the video) or generate.")] = None,
    generate: Annotated[str | None, typer.Option("--generate", help="Also record while generating this prompt.")] = None,
    steps: Annotated[int | None, typer.Option(help="--generate: denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="--generate: classifier-free guidance scale.")] = None,
    tar: Annotated[str | None, typer.Option(help="--generate: TAR preset, e.g. 64D1.")] = None,
    no_tar: Annotated[bool, typer.Option("--no-tar", help="--generate: switch TAR off.")] = False,
    replace_attention: Annotated[str | None, typer.Option(help="--generate: fixed temporal attention, e.g. identity:64,32 or uniform:16.")] = None,
    tar_reference: Annotated[Path | None, typer.Option(help="--generate: TAR's dA from this video's frame similarity.")] = None,
    tar_reference_metric: Annotated[str | None, typer.Option(help="--generate: similarity of --tar-reference: ssim (default), mae, histogram or dreamsim.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise (real video) and of the generation.")] = 0,
    plot_band: Annotated[str | None, typer.Option(help="Also plot TAR's dA for these sigmas, e.g. 1,2,4,8,16 (with --frames).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for attention.json, attention.png/.pdf (and bands.png/.pdf).")] = Path("outputs/analysis"),
    device: Annotated[str | None, typer.Option(help="cuda, mps, cpu (default: best available).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files of an earlier analysis in --out.")] = False,
) -> None:
    """Record the temporal attention of a real video (noised to --timestep, one denoiser call) and/or of a
    generation (--generate), per layer and level, with band scores and heatmaps (paper figures 4, 10, S.10)."""
    from vstar.analysis.plots import attention_figure, band_figure, block_ranges, save_figure
    from vstar.analysis.real_video import check_train_timestep, pick_frames
    from vstar.backbones import DEFAULT_MODEL, get_spec
    from vstar.config import MAX_SEED
    from vstar.io import read_video, write_video
    from vstar.outputs import check_writable, claim_outputs, file_sha256, staged_result
    from vstar.tar import regularization_matrix

    if video is None and generate is None and plot_band is None:
        raise ValueError("give a VIDEO to analyse, --generate PROMPT, or --plot-band SIGMAS (or several)")
    sigmas = parse_sigmas(plot_band) if plot_band is not None else []
    model = model or DEFAULT_MODEL
    defaults = get_spec(model).defaults
    if frames is not None and frames < 2:
        raise ValueError(f"--frames must be >= 2, got {frames}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed}")
    check_train_timestep(timestep, defaults.num_train_timesteps, model)
    if video is not None or generate is not None:
        defaults.check_temporal_attention(model, "vstar analyze", layouts=("temporal", "spatiotemporal"))
    if sigmas:
        check_band_frames(frames or defaults.num_frames)
    if generate is not None and not generate.strip():
        raise ValueError("--generate needs a prompt, e.g. --generate 'a red circle'; got an empty one")
    config = None
    if generate is not None:
        config = generation_config(
            {"num_frames": frames, "num_inference_steps": steps, "guidance_scale": guidance, "seed": seed},
            {"preset": tar, "off": no_tar, "max_mode": None, "strength": None, "step_fraction": None}, {}, model,
            attention_changes(replace_attention, tar_reference, tar_reference_metric))
    elif replace_attention is not None or tar_reference is not None or tar_reference_metric is not None:
        raise ValueError("--replace-attention and --tar-reference(-metric) act on a generation; add --generate PROMPT")
    outputs = ([out / "attention.json", out / "attention.png", out / "attention.pdf"] if video or generate else [])
    outputs += [out / "bands.png", out / "bands.pdf"] if sigmas else []
    outputs += [out / "generated.mp4"] if generate is not None else []
    record = out / "attention.json"  # names generated.mp4 with its sha256
    for path in outputs:
        check_writable(path, overwrite, analysis_output_kind(path), record)
    real = read_video(video) if video is not None else None
    if frames is not None and (video is not None or generate is not None):
        defaults.check_num_frames(frames, model)
    count = frames or defaults.latent_frames_fit(min(len(real), defaults.num_frames)) if real is not None else None
    if real is not None:  # a video too short for --frames (or for any temporal attention) fails here
        pick_frames(len(real), count)

    with claim_outputs(*outputs):
        summaries, maps, settings, generated = analyse(
            backbone=load_model(model, device) if real is not None or config is not None else None,
            real=real, video=video, count=count, config=config, generate=generate, prompt=prompt,
            timestep=timestep, seed=seed, model=model)
        for name, summary in summaries.items():
            scores = ", ".join(f"{level} {entry['band_score']:.2f}" for level, entry in summary["levels"].items())
            typer.echo(f"{name}: band score (expected frame distance) per level: {scores}")
        with staged_result(overwrite) as staged:  # every file of the analysis, or none
            files = {}
            if generated is not None:
                written = write_video(generated.frames[0], out / "generated.mp4", fps=generated.config.fps,
                                      result=staged, record=record)
                files["generated.mp4"] = file_sha256(written)
            if summaries:
                unit = "block" if defaults.attention_layout == "spatiotemporal" else "level"
                shown = {name: block_ranges(by) for name, by in maps.items()} if unit == "block" else maps
                figure = attention_figure(shown, title=f"temporal attention per {unit} ({model})", unit=unit)
                for suffix in (".png", ".pdf"):
                    save_figure(figure, out / f"attention{suffix}", result=staged)
            if sigmas:
                count = frames or defaults.num_frames
                figure = band_figure({f"sigma {s:g}": regularization_matrix(count, s) for s in sigmas})
                for suffix in (".png", ".pdf"):
                    save_figure(figure, out / f"bands{suffix}", result=staged)
            if summaries:
                write_json({"settings": settings, "videos": summaries, "files": files}, record, staged, "analysis")
    typer.echo(f"wrote {', '.join(str(p) for p in outputs)}")


def analysis_output_kind(path: Path) -> OutputKind:
    """How vstar shows it wrote a file of ``vstar analyze`` (the JSON record, a figure, the generated video)."""
    return {".json": "analysis", ".mp4": "video"}.get(path.suffix, "figure")  # type: ignore[return-value]


def analyse(backbone: Any, real: Any, video: Path | None, count: int | None, config: Any, generate: str | None,
            prompt: str, timestep: int, seed: int, model: str) -> tuple[dict[str, Any], dict[str, Any],
                                                                        dict[str, Any], Any]:
    """The attention of the real video (``count`` of its frames) and/or the generation: summaries and maps
    per video name, the settings, and the generation's :class:`~vstar.pipeline.VSTAROutput` (None without
    ``--generate``)."""
    from vstar.analysis.real_video import prepare_video, record_video_attention

    summaries: dict[str, Any] = {}
    maps: dict[str, Any] = {}
    settings: dict[str, Any] = {"model": model, "seed": seed}
    generated = None
    if real is not None:
        defaults = backbone.defaults
        clip = prepare_video(real, count, defaults.height, defaults.width)
        recorder = record_video_attention(backbone, clip, prompt, timestep, seed)
        name = f"real: {video.name}"
        summaries[name] = {"source": str(video), **attention_summary(recorder)}
        maps[name] = recorder.by_level()
        settings |= {"prompt": prompt, "timestep": timestep, "frames": count, "height": defaults.height,
                     "width": defaults.width}
    if config is not None:
        from vstar.pipeline import VSTARPipeline

        generated = VSTARPipeline(backbone)(generate, config=config, record_attention=True, progress=False)
        name = f"generated: {generate}"
        summaries[name] = {"source": generate, "settings": generated.config.to_dict(),
                           **attention_summary(generated.attention)}
        maps[name] = generated.attention.by_level()
    return summaries, maps, settings, generated
