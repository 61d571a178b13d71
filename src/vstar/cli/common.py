"""What the ``vstar`` commands share: one-line errors, the one function that builds a generation's settings
from flags, the synopsis options, and writing a generation's video, noise file and sidecar all or nothing.

Nothing here imports torch or diffusers at import time: ``vstar --help`` starts without them.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from vstar.synopsis.errors import SynopsisError

if TYPE_CHECKING:
    from vstar.config import GenerationConfig
    from vstar.noise.optimization import OptimizedNoise
    from vstar.outputs import StagedResult
    from vstar.pipeline import VSTAROutput, VSTARPipeline

F = TypeVar("F", bound=Callable[..., Any])


# --- the options that generate and batch share (one help text each) ------------------------------------------
NoVspOption = Annotated[bool, typer.Option("--no-vsp", help="Use the prompt for every frame (no synopsis).")]
LlmBackendOption = Annotated[str | None, typer.Option(help="Synopsis backend: auto (default), rules, openai, transformers.")]
LlmModelOption = Annotated[str | None, typer.Option(help="LLM for the synopsis (server model name or Hub id).")]
LlmBaseUrlOption = Annotated[str | None, typer.Option(help="OpenAI-compatible server for the synopsis.")]
StatesOption = Annotated[int | None, typer.Option(help="Ask the synopsis backend for this many states.")]
StyleOption = Annotated[str | None, typer.Option(help="Appended to every state, e.g. 'realistic, best quality, 4k'.")]
ModelOption = Annotated[str | None, typer.Option(help="Base model (see `vstar models`); default videocrafter2.")]
ModelPathOption = Annotated[Path | None, typer.Option(help="A local copy of the model's weights (diffusers folder).")]
FramesOption = Annotated[int | None, typer.Option(help="Number of frames, generated in one pass.")]
StepsOption = Annotated[int | None, typer.Option(help="Denoising steps.")]
GuidanceOption = Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")]
NegativePromptOption = Annotated[str | None, typer.Option(help="What to steer away from.")]
HeightOption = Annotated[int | None, typer.Option(help="Frame height in pixels.")]
WidthOption = Annotated[int | None, typer.Option(help="Frame width in pixels.")]
TarOption = Annotated[str | None, typer.Option(help="TAR preset: 64D1 (16-32 frames), 64D1_32D8 (long videos); a transformer names blocks: b0-9D2. Default: the model's own (see the README).")]
NoTarOption = Annotated[bool, typer.Option("--no-tar", help="Switch Temporal Attention Regularization off.")]
TarMaxModeOption = Annotated[str | None, typer.Option(help="Max of the logits per row (authors), head or global.")]
TarStrengthOption = Annotated[float | None, typer.Option(help="Multiplier of max(S) * dA.")]
TarStepFractionOption = Annotated[float | None, typer.Option(help="Regularize the first fraction of steps.")]
TarReferenceOption = Annotated[Path | None, typer.Option(help="TAR's dA from this video's frame similarity (paper figure 9) instead of the Gaussian band.")]
TarReferenceMetricOption = Annotated[str | None, typer.Option(help="Frame similarity of --tar-reference: ssim (default), mae, histogram or dreamsim.")]
ReplaceAttentionOption = Annotated[str | None, typer.Option(help="Fixed temporal attention (paper figure 5): identity:64,32 or uniform:16; 'none' drops a recorded one.")]
InterpolationOption = Annotated[str | None, typer.Option(help="Between keyframes: linear, step or slerp.")]
FpsOption = Annotated[int | None, typer.Option(help="Frame rate of the written video.")]
UpscaleOption = Annotated[int | None, typer.Option(help="Enlarge each pixel N x N in the written video.")]
CondFpsOption = Annotated[int | None, typer.Option(help="Frame-rate conditioning of models that take it.")]
DeviceOption = Annotated[str | None, typer.Option(help="cuda, mps, cpu (default: best available).")]
DtypeOption = Annotated[str | None, typer.Option(help="fp32, fp16, bf16 (default: fp16 on GPU, fp32 on CPU).")]
NoMemoryCheckOption = Annotated[bool, typer.Option("--no-memory-check", help="Skip the memory estimate made before loading.")]
OffloadOption = Annotated[str | None, typer.Option(help="Keep the weights in CPU memory and move each part ('model') or each layer ('sequential', least memory, slowest) to the GPU when it runs: models larger than the GPU, e.g. Wan 14B on 24-48 GB.")]
FrameChunkOption = Annotated[str | None, typer.Option(help="Run the spatial layers on N frames at a time (the temporal ones on as many latent pixels): less memory for long videos, the same video up to float rounding; 'auto': the largest N the memory estimate says fits (whole when all fits).")]
MaxMemoryOption = Annotated[float | None, typer.Option(help="GiB the memory check and --frame-chunk auto may use on the model's device (the host on the CPU); default all that is free.")]
QuietOption = Annotated[bool, typer.Option(help="No progress bars, no notes.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` in red on stderr; return the exit to raise (2: bad input, 1: a failure)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def error_code(err: BaseException) -> int | None:
    """The exit code of an error the commands report in one line (2: bad input, 1: a failure); None for a bug."""
    if isinstance(err, (ValueError, TypeError, FileExistsError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, PermissionError)):
        return 2
    if isinstance(err, (RuntimeError, SynopsisError, OSError)):  # models, LLM servers, devices, the disk
        return 1
    return None


def error_message(err: BaseException) -> str:
    """The one line that reports ``err`` (an error with an :func:`error_code`)."""
    if isinstance(err, OSError) and error_code(err) == 1:  # a full disk, a refused name, a vanished folder
        where = f" ({err.filename})" if err.filename else ""
        return f"cannot write the output{where}: {err.strerror or err}; nothing was left behind"
    return str(err)


def friendly_errors(command: F) -> F:
    """Turn the library's input errors into one-line messages instead of tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as err:
            code = error_code(err)
            if code is None:
                raise
            raise fail(error_message(err), code) from None

    return wrapper  # type: ignore[return-value]


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


def generation_config(flags: dict[str, Any], tar_flags: dict[str, Any], recorded: dict[str, Any],
                      model: str, attention: dict[str, Any] | None = None) -> GenerationConfig:
    """The one place the CLI builds its settings: flags over the sidecar (``--from``) over the registry's
    defaults of ``model``; validated for that model before anything is loaded.

    ``flags`` maps :class:`GenerationConfig` fields to flag values (None = not given); ``tar_flags`` holds
    ``preset``, ``off`` (``--no-tar``), ``max_mode``, ``strength`` and ``step_fraction``; ``attention``
    holds the changes of :func:`attention_changes`, where None clears a recorded setting.
    """
    from vstar.backbones.registry import get_spec
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


def check_synopsis_options(synopsis: list[str] | None, synopsis_file: Path | None, select: str | None, no_vsp: bool,
                           llm: dict[str, Any], states: int | None, style: str | None) -> None:
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


def setting_flags(*, frames: int | None, height: int | None, width: int | None, steps: int | None,
                  guidance: float | None, negative_prompt: str | None, interpolation: str | None,
                  cond_fps: int | None, fps: int | None, seed: int | None) -> dict[str, Any]:
    """The setting flags of ``generate`` (and ``batch``) as :class:`GenerationConfig` fields (None: not given),
    the ``flags`` of :func:`generation_config`."""
    return {"num_frames": frames, "height": height, "width": width, "num_inference_steps": steps,
            "guidance_scale": guidance, "negative_prompt": negative_prompt, "interpolation": interpolation,
            "cond_fps": cond_fps, "fps": fps, "seed": seed}


def tar_flags(tar: str | None, no_tar: bool, max_mode: str | None, strength: float | None,
              step_fraction: float | None) -> dict[str, Any]:
    """``--tar``, ``--no-tar`` and ``--tar-*`` as the ``tar_flags`` of :func:`generation_config`."""
    return {"preset": tar, "off": no_tar, "max_mode": max_mode, "strength": strength, "step_fraction": step_fraction}


def run_device(device: Any, dtype: str | None, offload: str | None) -> tuple[Any, Any]:
    """The ``torch.device`` and ``torch.dtype`` a generation runs with (``device`` None: the best available;
    ``dtype`` None: fp16 on a GPU, fp32 on the CPU); ``--offload`` needs a GPU."""
    from vstar.devices import resolve_device, resolve_dtype
    from vstar.offload import check_offload

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    check_offload(offload)
    if offload is not None and torch_device.type != "cuda":
        raise ValueError(f"--offload {offload} moves weights between CPU memory and a GPU; this run is on "
                         f"{torch_device}: drop --offload (or give --device cuda)")
    return torch_device, torch_dtype


def memory_plan(model: str, config: GenerationConfig, *, device: Any, dtype: Any, upscale: int,
                max_memory: float | None, offload: str | None, frame_chunk: int | Literal["auto"] | None,
                check: bool, quiet: bool) -> int | None:
    """``--frame-chunk`` for one generation of ``config`` on ``model`` (``auto``: the largest number of frames
    the memory estimate says fits, None: whole), after checking (``check``) that the estimate fits."""
    from vstar.backbones.registry import get_spec
    from vstar.resources import check_memory, choose_frame_chunk

    defaults = get_spec(model).defaults
    memory = {"batch": 2 if config.uses_guidance else 1, "dtype": dtype, "device": device,
              "upscale": upscale, "max_memory": max_memory, "offload": offload}
    if frame_chunk == "auto":
        frame_chunk = choose_frame_chunk(defaults, config.num_frames, config.height, config.width, **memory)
        if not quiet:
            typer.echo(f"--frame-chunk auto: {f'{frame_chunk} frames per spatial call' if frame_chunk else 'whole'}",
                       err=True)
    if check:
        check_memory(defaults, model, config.num_frames, config.height, config.width, frame_chunk=frame_chunk,
                     **memory)
    return frame_chunk


def load_pipeline(model: str, model_path: Path | None, device: Any, dtype: Any, offload: str | None,
                  quiet: bool, detail: str = "") -> VSTARPipeline:
    """The pipeline of ``model`` on ``device`` (with ``offload``: its weights in CPU memory, moved to the GPU
    when they run); unless ``quiet``, a note of what was loaded where, followed by ``detail``."""
    from vstar.backbones.registry import get_spec
    from vstar.offload import enable_offload
    from vstar.pipeline import VSTARPipeline

    pipe = VSTARPipeline.from_pretrained(model, model_path=model_path, dtype=dtype,
                                         device="cpu" if offload else device)
    if offload is not None:
        enable_offload(pipe.backbone, offload, device)
    if not quiet:
        spec = get_spec(model)
        origin = spec.description if spec.tiny else (model_path or ", ".join(spec.model_ids))
        typer.echo(f"model {model} ({origin}) on {pipe.device}{detail}", err=True)
    return pipe


def write_generation(result: VSTAROutput, out: Path, *, config: GenerationConfig, source: dict[str, Any], model: str,
                     model_path: Path | None, pipe: VSTARPipeline, upscale: int, weights: Any,
                     noise: OptimizedNoise | None = None, noise_out: Path | None = None, overwrite: bool,
                     command: str) -> Path:
    """Write the generated video ``out`` (``(F, H, W, 3)`` frames of ``result``, enlarged ``upscale`` times),
    the optimized ``noise`` as ``noise_out`` and the sidecar beside them: all three or none. Return the sidecar's
    path. ``source`` is the synopsis (``prompt``, ``states``, ``backend`` and its details); the caller has
    checked and claimed the outputs."""
    import vstar
    from vstar.io import output_kind, sidecar_path, write_sidecar, write_video
    from vstar.noise.cli import save_noise
    from vstar.outputs import file_sha256, staged_result

    if (noise is None) != (noise_out is None):
        raise ValueError("write_generation takes noise and noise_out together; give both or neither")
    sidecar = sidecar_path(out)
    with staged_result(overwrite) as staged:  # the video, its noise file and its sidecar: all or none
        written = write_video(result.frames[0], out, fps=config.fps, upscale=upscale, result=staged)
        files = {} if output_kind(out) == "png" else {out.name: file_sha256(written)}
        noise_entry = save_noise(noise, noise_out, staged, sidecar) if noise is not None else None
        metadata = {
            "vstar_version": vstar.__version__, "kind": "generation", "prompt": source["prompt"],
            "synopsis": result.states, "synopsis_source": source["backend"],
            "synopsis_info": {k: v for k, v in source.items() if k not in ("prompt", "states")},
            "keyframes": result.keyframes, "model": model,
            "model_path": str(model_path) if model_path else None,
            "device": str(pipe.device), "dtype": str(pipe.backbone.dtype).removeprefix("torch."),
            "upscale": upscale, "settings": result.config.to_dict(), "output": out.name,
            "files": files | ({noise_entry["file"]: noise_entry["sha256"]} if noise_entry else {}),
            "noise": noise_entry, "weights": dict(weights), "command": command,
        }
        write_sidecar(metadata, sidecar, result=staged)
    return sidecar


def write_json(data: dict[str, Any], path: Path, result: StagedResult, kind: Literal["analysis", "evaluation"]) -> None:
    """Stage ``data`` as indented JSON at ``path`` in ``result``, marked as vstar's record of ``kind``."""
    import vstar

    tmp = result.stage(path, kind)
    record = {"vstar_version": vstar.__version__, "kind": kind, **data}
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def load_model(model: str | None, device: str | None) -> Any:
    """The backbone named ``model`` (None when not given) in float32 on ``device`` (``vstar analyze``/``evaluate``)."""
    if model is None:
        return None
    from vstar.backbones import load_backbone
    from vstar.devices import resolve_device

    return load_backbone(model, device=resolve_device(device), dtype="fp32")
