"""The ``vstar`` command: parses flags, calls the library, prints. Errors exit with code 2 and one line."""

from __future__ import annotations

import functools
import random
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

import vstar
from vstar.analysis.cli import register as register_analysis
from vstar.backbones.registry import get_spec
from vstar.backbones.videocrafter2.cli import register as register_convert_videocrafter2
from vstar.synopsis.cli import register as register_synopsis
from vstar.synopsis.errors import SynopsisError

if TYPE_CHECKING:
    from vstar.config import GenerationConfig

app = typer.Typer(
    name="vstar", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Longer, dynamic text-to-video from pretrained diffusion models (Video Synopsis Prompting and "
         "Temporal Attention Regularization).",
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def friendly_errors(command: F) -> F:
    """Turn the library's input errors into one-line messages instead of tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ValueError, TypeError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                PermissionError) as err:
            raise fail(str(err)) from None
        except (RuntimeError, SynopsisError) as err:  # models that cannot be loaded, LLM servers, devices
            raise fail(str(err), code=1) from None
        except OSError as err:  # a full disk, a name the file system refuses, a vanished folder
            where = f" ({err.filename})" if err.filename else ""
            raise fail(f"cannot write the output{where}: {err.strerror or err}; nothing was left behind",
                       code=1) from None

    return wrapper  # type: ignore[return-value]


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """The ``vstar`` entry point: SIGTERM unwinds like Ctrl-C, so temporary files and claims are removed."""
    signal.signal(signal.SIGTERM, _terminate)
    app()


register_synopsis(app)
register_convert_videocrafter2(app)
register_analysis(app)


@app.command()
def version() -> None:
    """Print the vstar version."""
    typer.echo(vstar.__version__)


@app.command()
def models() -> None:
    """List the base models with their recommended settings and whether their weights are available here."""
    from vstar.backbones import list_backbones, weights_available

    typer.echo(f"{'name':<18} {'size':>9} {'frames':>6} {'guid.':>5}  {'weights':<10} source")
    for spec in list_backbones():
        d = spec.defaults
        frames = f"{d.num_frames}" + (f"/{d.max_frames}" if d.max_frames else "")
        available = "built-in" if spec.tiny else ("cached" if weights_available(spec) else "download")
        source = ", ".join(spec.model_ids) or ("random weights, built in code" if spec.seeded else "shipped with vstar")
        typer.echo(f"{spec.name:<18} {d.height:>4}x{d.width:<4} {frames:>6} {d.guidance_scale:>5g}  "
                   f"{available:<10} {source}")
        typer.echo(f"{'':<18} {spec.description}")


def recorded_command(argv: list[str]) -> str:
    """The command line as the sidecar records it: ``vstar`` and the arguments, with credentials in URLs
    (user info, secret-looking query values) masked as in messages."""
    from vstar.synopsis.backends.openai_compat import mask_url

    def masked(arg: str) -> str:
        if "://" not in arg:
            return arg
        flag, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return f"{flag}{equals}{mask_url(value)}"

    return shlex.join(["vstar", *(masked(a) for a in argv[1:])]) if argv else "vstar generate"


def check_same_weights(recorded: dict[str, Any] | None, loaded: Any, sidecar: Path, strict: bool, quiet: bool) -> None:
    """``--from``: warn (``strict``: refuse) when the loaded weights differ from those the sidecar recorded;
    a note when the sidecar records none (vstar < 0.3.0)."""
    from vstar.backbones.weights_identity import identity_differences

    comparison = identity_differences(recorded, loaded)
    if comparison.differs and strict:
        raise ValueError(f"--strict: the loaded weights differ from those {sidecar.name} was made with "
                         f"({'; '.join(comparison.differs)}); load those weights or drop --strict")
    for line in comparison.differs:
        typer.secho(f"warning: the weights differ from those {sidecar.name} was made with, so the video will "
                    f"too: {line}", err=True, fg=typer.colors.YELLOW)
    if comparison.unknown and not quiet:
        typer.echo(f"note: {comparison.unknown}", err=True)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "video"


def generation_config(flags: dict[str, Any], tar_flags: dict[str, Any], recorded: dict[str, Any],
                      model: str, attention: dict[str, Any] | None = None) -> GenerationConfig:
    """The one place the CLI builds its settings: flags over the sidecar (``--from``) over the registry's
    defaults of ``model``; validated for that model before anything is loaded.

    ``flags`` maps :class:`GenerationConfig` fields to flag values (None = not given); ``tar_flags`` holds
    ``preset``, ``off`` (``--no-tar``), ``max_mode``, ``strength`` and ``step_fraction``; ``attention``
    holds the changes of :func:`attention_changes`, where None clears a recorded setting.
    """
    from vstar.config import GenerationConfig, config_from_sidecar, tar_from_dict, tar_to_dict

    defaults = get_spec(model).defaults
    base = config_from_sidecar(recorded, defaults) if recorded else GenerationConfig()
    base = base.replace(tar=base.resolved(defaults).tar)  # the model's own preset in place of "default"
    changes = {k: v for k, v in flags.items() if v is not None} | (attention or {})
    if tar_flags["off"] and tar_flags["preset"] is not None:
        raise ValueError("--tar and --no-tar contradict each other; give one of them")
    recorded_tar = tar_to_dict(base.tar)
    options = {k: tar_flags[k] if tar_flags[k] is not None else recorded_tar[f"tar_{k}"]
               for k in ("max_mode", "strength", "step_fraction")}
    if tar_flags["off"]:
        changes["tar"] = None
    elif tar_flags["preset"] is not None or base.tar is not None:
        preset = tar_flags["preset"] if tar_flags["preset"] is not None else recorded_tar["tar"]
        changes["tar"] = tar_from_dict({"tar": preset, **{f"tar_{k}": v for k, v in options.items()}})
    config = base.replace(**changes).resolved(defaults)
    config.check_for(defaults, model)
    return config


def check_synopsis_options(synopsis: list[str] | None, synopsis_file: Path | None, select: str | None, no_vsp: bool, llm: dict[str, Any], states: int | None,
                           style: str | None) -> None:
    """Refuse options that contradict each other instead of silently preferring one (``llm`` maps the
    ``--llm-*`` flags that were given to their values)."""
    given = [name for name, on in (("--synopsis/-s", synopsis), ("--synopsis-file", synopsis_file is not None),
                                   ("--no-vsp", no_vsp)) if on]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} contradict each other (each chooses the states); give one")
    if select is not None and synopsis_file is None:
        raise ValueError("--select picks an entry of a --synopsis-file; give the file or drop --select")
    if given and (states is not None or llm):
        asked = ["--states"] * (states is not None) + sorted(llm)
        raise ValueError(f"{', '.join(asked)} {'is' if len(asked) == 1 else 'are'} for an LLM's states, but "
                         f"{given[0]} gives them; drop one")
    if no_vsp and style:
        raise ValueError("--style is appended to synopsis states; with --no-vsp write it into the prompt")
    if synopsis is not None and not all(s.strip() for s in synopsis):
        raise ValueError("a --synopsis/-s state is empty; give each visual state as text, e.g. -s 'a red circle'")


def given_synopsis(prompt: str | None, synopsis: list[str] | None, synopsis_file: Path | None,
                   select: str | None, no_vsp: bool, style: str | None) -> dict[str, Any] | None:
    """The states when they need no LLM (``-s``, a file, ``--no-vsp``), else None (VSP asks one later)."""
    from vstar.synopsis import apply_style, load_synopsis_file

    if synopsis:
        return {"prompt": prompt, "states": apply_style(list(synopsis), style), "backend": "manual", "style": style}
    if synopsis_file is not None:
        result = load_synopsis_file(synopsis_file, select=select, prompt=prompt, style=style)
        return {**result.to_dict(), "prompt": prompt or result.prompt, "file": str(synopsis_file)}
    if not (prompt and prompt.strip()):
        raise ValueError("give a prompt, e.g. vstar generate \"a landscape from winter to spring\", or --from F.json")
    if no_vsp:
        return {"prompt": prompt, "states": [prompt], "backend": "none"}
    return None


def asked_synopsis(prompt: str, llm: dict[str, Any], num_states: int | None, style: str | None,
                   quiet: bool) -> dict[str, Any]:
    """Video Synopsis Prompting: the states an LLM (or the offline rules) proposes for ``prompt``."""
    from vstar.synopsis import make_synopsis

    result = make_synopsis(prompt, backend=llm.get("backend", "auto"), num_states=num_states, style=style,
                           **{k: v for k, v in llm.items() if k != "backend"})
    if not quiet:
        for note in result.notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"synopsis ({result.backend}): " + " | ".join(result.states), err=True)
    return result.to_dict()


def silence_progress_bars() -> None:
    """``--quiet``: no progress bars from the libraries either (weight loading, downloads)."""
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def attention_changes(replace_attention: str | None, tar_reference: Path | None, metric: str | None) -> dict[str, Any]:
    """``--replace-attention`` (``none`` clears a recorded one) and ``--tar-reference`` (with
    ``--tar-reference-metric``, default ssim) as config changes; the reference video is read and its
    similarity taken here, before any model is loaded."""
    from vstar.analysis.reference import REFERENCE_METRICS, reference_from_video
    from vstar.analysis.similarity import check_dreamsim_installed

    if metric is not None and metric not in REFERENCE_METRICS:
        raise ValueError(f"--tar-reference-metric must be one of {', '.join(REFERENCE_METRICS)}, got {metric!r}")
    if metric is not None and tar_reference is None:
        raise ValueError("--tar-reference-metric says how --tar-reference VIDEO is compared; give the video or drop it")
    if metric == "dreamsim":
        check_dreamsim_installed()
    metric = metric or "ssim"
    changes: dict[str, Any] = {}
    if replace_attention is not None:
        changes["replace_attention"] = None if replace_attention.strip().lower() == "none" else replace_attention
    if tar_reference is not None:
        changes["tar_reference"] = reference_from_video(tar_reference, metric)
    return changes


def frame_chunk_option(value: str | None) -> int | Literal["auto"] | None:
    """``--frame-chunk``: a whole number of frames >= 1, or ``auto``."""
    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    try:
        chunk = int(value)
    except ValueError:
        chunk = 0
    if chunk < 1:
        raise ValueError(f"--frame-chunk takes a whole number of frames >= 1 or 'auto', got {value!r}")
    return chunk


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str | None, typer.Argument(help="What the video shows, e.g. 'a landscape from winter to spring'.")] = None,
    synopsis: Annotated[list[str] | None, typer.Option("--synopsis", "-s", help="A visual state; repeat for each keyframe.")] = None,
    synopsis_file: Annotated[Path | None, typer.Option(help="States from a JSON/YAML/text file or the paper's prompt_list.json.")] = None,
    select: Annotated[str | None, typer.Option(help="Entry of a multi-entry --synopsis-file: index or prompt.")] = None,
    no_vsp: Annotated[bool, typer.Option("--no-vsp", help="Use the prompt for every frame (no synopsis).")] = False,
    llm_backend: Annotated[str | None, typer.Option(help="Synopsis backend: auto (default), rules, openai, transformers.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="LLM for the synopsis (server model name or Hub id).")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server for the synopsis.")] = None,
    states: Annotated[int | None, typer.Option(help="Ask the synopsis backend for this many states.")] = None,
    style: Annotated[str | None, typer.Option(help="Appended to every state, e.g. 'realistic, best quality, 4k'.")] = None,
    model: Annotated[str | None, typer.Option(help="Base model (see `vstar models`); default videocrafter2.")] = None,
    model_path: Annotated[Path | None, typer.Option(help="A local copy of the model's weights (diffusers folder).")] = None,
    frames: Annotated[int | None, typer.Option(help="Number of frames, generated in one pass.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to steer away from.")] = None,
    height: Annotated[int | None, typer.Option(help="Frame height in pixels.")] = None,
    width: Annotated[int | None, typer.Option(help="Frame width in pixels.")] = None,
    tar: Annotated[str | None, typer.Option(help="TAR preset: 64D1 (16-32 frames), 64D1_32D8 (long videos).")] = None,
    no_tar: Annotated[bool, typer.Option("--no-tar", help="Switch Temporal Attention Regularization off.")] = False,
    tar_max_mode: Annotated[str | None, typer.Option(help="Max of the logits per row (authors), head or global.")] = None,
    tar_strength: Annotated[float | None, typer.Option(help="Multiplier of max(S) * dA.")] = None,
    tar_step_fraction: Annotated[float | None, typer.Option(help="Regularize the first fraction of steps.")] = None,
    tar_reference: Annotated[Path | None, typer.Option(help="TAR's dA from this video's frame similarity (paper figure 9) instead of the Gaussian band.")] = None,
    tar_reference_metric: Annotated[str | None, typer.Option(help="Frame similarity of --tar-reference: ssim (default), mae, histogram or dreamsim.")] = None,
    replace_attention: Annotated[str | None, typer.Option(help="Fixed temporal attention (paper figure 5): identity:64,32 or uniform:16; 'none' drops a recorded one.")] = None,
    reference_video: Annotated[Path | None, typer.Option(help="--optimize-noise: the real video whose temporal attention the initial noise should match (paper supplement B).")] = None,
    optimize_noise: Annotated[bool, typer.Option("--optimize-noise", help="Optimize the initial noise toward --reference-video's temporal attention, then sample (saved as NAME.noise.safetensors).")] = False,
    opt_steps: Annotated[int | None, typer.Option(help="--optimize-noise: Adam iterations (default 20).")] = None,
    opt_lr: Annotated[float | None, typer.Option(help="--optimize-noise: Adam's learning rate (default 0.05).")] = None,
    kl_weight: Annotated[float | None, typer.Option(help="--optimize-noise: weight of the KL to N(0, I) per latent element (default 1).")] = None,
    opt_timestep: Annotated[int | None, typer.Option(help="--optimize-noise: training timestep of both attention passes (default 400).")] = None,
    interpolation: Annotated[str | None, typer.Option(help="Between keyframes: linear, step or slerp.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (recorded in the sidecar).")] = None,
    fps: Annotated[int | None, typer.Option(help="Frame rate of the written video.")] = None,
    upscale: Annotated[int | None, typer.Option(help="Enlarge each pixel N x N in the written video.")] = None,
    cond_fps: Annotated[int | None, typer.Option(help="Frame-rate conditioning of models that take it.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output .mp4, .gif, or a folder for PNG frames.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    from_sidecar: Annotated[Path | None, typer.Option("--from", help="Reproduce the video of a sidecar .json.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --from: refuse, instead of warning, a sidecar with fields this vstar does not know or whose weights differ from the loaded ones.")] = False,
    device: Annotated[str | None, typer.Option(help="cuda, mps, cpu (default: best available).")] = None,
    dtype: Annotated[str | None, typer.Option(help="fp32, fp16, bf16 (default: fp16 on GPU, fp32 on CPU).")] = None,
    no_memory_check: Annotated[bool, typer.Option("--no-memory-check", help="Skip the memory estimate made before loading.")] = False,
    offload: Annotated[str | None, typer.Option(help="Keep the weights in CPU memory and move each part ('model') or each layer ('sequential', least memory, slowest) to the GPU when it runs: models larger than the GPU, e.g. Wan 14B on 24-48 GB.")] = None,
    frame_chunk: Annotated[str | None, typer.Option(help="Run the spatial layers on N frames at a time (the temporal ones on as many latent pixels): less memory for long videos, the same video up to float rounding; 'auto': the largest N the memory estimate says fits (whole when all fits).")] = None,
    max_memory: Annotated[float | None, typer.Option(help="GiB the memory check and --frame-chunk auto may use on the model's device (the host on the CPU); default all that is free.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars, no notes.")] = False,
) -> None:
    """Generate a video in one pass, with per-frame synopsis conditioning and TAR, plus a JSON sidecar.

    Every option, the output path and the memory estimate are checked before an LLM is asked or a model is
    loaded; the output and its sidecar are claimed first, so a second run writing them fails at once.
    """
    from vstar.backbones import DEFAULT_MODEL
    from vstar.backbones.weights_identity import weights_identity
    from vstar.devices import resolve_device, resolve_dtype
    from vstar.io import output_kind, sidecar_path, write_sidecar, write_video
    from vstar.noise.cli import check_noise_shape, noise_options, noise_path, recorded_noise, save_noise
    from vstar.offload import check_offload, enable_offload
    from vstar.outputs import check_sidecar_of, check_writable, claim_outputs, file_sha256, staged_result
    from vstar.pipeline import VSTARPipeline
    from vstar.resources import check_max_memory, check_memory, choose_frame_chunk
    from vstar.sidecar import load_sidecar

    if quiet:
        silence_progress_bars()
    recorded = load_sidecar(from_sidecar) if from_sidecar is not None else None
    if strict and recorded is None:
        raise ValueError("--strict checks what --from reproduces; give --from SIDECAR.json or drop --strict")
    if strict and recorded.unknown():
        raise ValueError(f"--strict: {from_sidecar} has what this vstar does not know ({', '.join(recorded.unknown())});"
                         " upgrade vstar or drop --strict")
    if recorded is not None and not quiet:
        for note in recorded.notes():
            typer.echo(f"note: {note}", err=True)
    llm = {k: v for k, v in (("backend", llm_backend), ("model", llm_model), ("base_url", llm_base_url))
           if v is not None}
    check_synopsis_options(synopsis, synopsis_file, select, no_vsp,
                           {f"--llm-{k.replace('_', '-')}": v for k, v in llm.items()}, states, style)
    model = model or (recorded.model if recorded else None) or DEFAULT_MODEL
    spec = get_spec(model)
    if recorded is not None and recorded.model_path and model_path is None:
        raise ValueError(f"{from_sidecar} was made with --model-path {recorded.model_path}; vstar does not follow "
                         "paths that a sidecar names: pass --model-path DIR (that folder or another copy) yourself")
    config = generation_config(
        {"num_frames": frames, "height": height, "width": width, "num_inference_steps": steps,
         "guidance_scale": guidance, "negative_prompt": negative_prompt, "interpolation": interpolation,
         "cond_fps": cond_fps, "fps": fps, "seed": seed},
        {"preset": tar, "off": no_tar, "max_mode": tar_max_mode, "strength": tar_strength,
         "step_fraction": tar_step_fraction},
        recorded.to_dict() if recorded else {}, model,
        attention_changes(replace_attention, tar_reference, tar_reference_metric),
    )
    if config.seed is None:
        config = config.replace(seed=random.randrange(2**31))
    noise_plan = noise_options(reference_video, optimize_noise, opt_steps, opt_lr, kl_weight, opt_timestep, config,
                               spec)
    noise = recorded_noise(recorded.noise, from_sidecar) if noise_plan is None and recorded and recorded.noise else None
    if noise is not None:
        check_noise_shape(noise, spec, config)
    upscale = upscale if upscale is not None else (recorded.upscale if recorded else 1)
    if upscale < 1:
        raise ValueError(f"--upscale must be >= 1, got {upscale}")
    chunk = frame_chunk_option(frame_chunk)
    spec.defaults.check_frame_chunk(chunk, model)
    check_max_memory(max_memory, "--max-memory")
    if out is not None:
        output_kind(out)

    if synopsis or synopsis_file or no_vsp or prompt is not None or recorded is None:
        source = given_synopsis(prompt, synopsis, synopsis_file, select, no_vsp, style)
    else:  # reproduce: the recorded states, without asking an LLM again
        source = {"prompt": recorded.prompt, "states": recorded.synopsis,
                  **(recorded.synopsis_info or {"backend": recorded.synopsis_source})}
    if source is not None and len(source["states"]) > spec.defaults.latent_frames(config.num_frames):
        raise ValueError(f"{len(source['states'])} synopsis states do not fit on {config.num_frames} frames; "
                         "use more --frames or fewer states")
    name = prompt or (source["prompt"] if source else None) or (source["states"][0] if source else "video")
    out = out or Path("outputs") / f"{_slug(name)}-{config.seed}.mp4"
    kind = output_kind(out)
    sidecar = sidecar_path(out)
    check_writable(sidecar, overwrite, "sidecar")
    check_sidecar_of(sidecar, out)
    check_writable(out, overwrite, "frames" if kind == "png" else "video", sidecar)
    noise_outputs = [noise_path(out)] if noise_plan is not None or noise is not None else []
    for path in noise_outputs:
        check_writable(path, overwrite, "noise", sidecar)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype or (recorded.dtype if recorded else None), torch_device)
    check_offload(offload)
    if offload is not None and torch_device.type != "cuda":
        raise ValueError(f"--offload {offload} moves weights between CPU memory and a GPU; this run is on "
                         f"{torch_device}: drop --offload (or give --device cuda)")
    memory = {"batch": 2 if config.uses_guidance else 1, "dtype": torch_dtype, "device": torch_device,
              "upscale": upscale, "max_memory": max_memory, "offload": offload}
    if chunk == "auto":
        chunk = choose_frame_chunk(spec.defaults, config.num_frames, config.height, config.width, **memory)
        if not quiet:
            typer.echo(f"--frame-chunk auto: {f'{chunk} frames per spatial call' if chunk else 'whole'}", err=True)
    if not no_memory_check:
        check_memory(spec.defaults, model, config.num_frames, config.height, config.width, frame_chunk=chunk,
                     **memory)

    with claim_outputs(out, sidecar, *noise_outputs):
        if source is None:
            source = asked_synopsis(prompt or "", llm, states, style, quiet)
        prompt, chosen_states = source["prompt"], source["states"]
        pipe = VSTARPipeline.from_pretrained(model, model_path=model_path, dtype=torch_dtype,
                                             device="cpu" if offload else torch_device)
        if offload is not None:
            enable_offload(pipe.backbone, offload, torch_device)
        if not quiet:
            origin = spec.description if spec.tiny else (model_path or ", ".join(spec.model_ids))
            typer.echo(f"model {model} ({origin}) on {pipe.device}, seed {config.seed}", err=True)
        weights = weights_identity(pipe.backbone)
        if recorded is not None:
            check_same_weights(recorded.weights, weights, from_sidecar, strict, quiet)
        if noise_plan is not None:
            noise = noise_plan.optimize(pipe, prompt, chosen_states, config, progress=not quiet)
        result = pipe(prompt, chosen_states, config=config, progress=not quiet, check_memory=False,
                      latents=noise.latents if noise is not None else None, frame_chunk=chunk)
        with staged_result(overwrite) as staged:  # the video, its noise file and its sidecar: all or none
            written = write_video(result.frames[0], out, fps=config.fps, upscale=upscale, result=staged)
            files = {} if kind == "png" else {out.name: file_sha256(written)}
            noise_entry = save_noise(noise, noise_outputs[0], staged, sidecar) if noise is not None else None
            metadata = {
                "vstar_version": vstar.__version__, "kind": "generation", "prompt": prompt,
                "synopsis": result.states, "synopsis_source": source["backend"],
                "synopsis_info": {k: v for k, v in source.items() if k not in ("prompt", "states")},
                "keyframes": result.keyframes, "model": model,
                "model_path": str(model_path) if model_path else None,
                "device": str(pipe.device), "dtype": str(pipe.backbone.dtype).removeprefix("torch."),
                "upscale": upscale, "settings": result.config.to_dict(), "output": out.name,
                "files": files | ({noise_entry["file"]: noise_entry["sha256"]} if noise_entry else {}),
                "noise": noise_entry, "weights": dict(weights), "command": recorded_command(sys.argv),
            }
            write_sidecar(metadata, sidecar, result=staged)
    typer.echo(f"wrote {out} ({len(result.frames[0])} frames) and {sidecar}")
