"""``vstar generate PROMPT``: one video in one pass, with per-frame synopsis conditioning and TAR, plus its sidecar."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Annotated

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
    check_same_weights,
    check_synopsis_options,
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


@friendly_errors
def generate(
    prompt: Annotated[str | None, typer.Argument(help="What the video shows, e.g. 'a landscape from winter to spring'.")] = None,
    synopsis: Annotated[list[str] | None, typer.Option("--synopsis", "-s", help="A visual state; repeat for each keyframe.")] = None,
    synopsis_file: Annotated[Path | None, typer.Option(help="States from a JSON/YAML/text file or the paper's prompt_list.json.")] = None,
    select: Annotated[str | None, typer.Option(help="Entry of a multi-entry --synopsis-file: index or prompt.")] = None,
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
    reference_video: Annotated[Path | None, typer.Option(help="--optimize-noise: the real video whose temporal attention the initial noise should match (paper supplement B).")] = None,
    optimize_noise: Annotated[bool, typer.Option("--optimize-noise", help="Optimize the initial noise toward --reference-video's temporal attention, then sample (saved as NAME.noise.safetensors).")] = False,
    opt_steps: Annotated[int | None, typer.Option(help="--optimize-noise: Adam iterations (default 20).")] = None,
    opt_lr: Annotated[float | None, typer.Option(help="--optimize-noise: Adam's learning rate (default 0.05).")] = None,
    kl_weight: Annotated[float | None, typer.Option(help="--optimize-noise: weight of the KL to N(0, I) per latent element (default 1).")] = None,
    opt_timestep: Annotated[int | None, typer.Option(help="--optimize-noise: training timestep of both attention passes (default 400).")] = None,
    interpolation: InterpolationOption = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (recorded in the sidecar).")] = None,
    fps: FpsOption = None,
    upscale: UpscaleOption = None,
    cond_fps: CondFpsOption = None,
    out: Annotated[Path | None, typer.Option(help="Output .mp4, .gif, or a folder for PNG frames.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    from_sidecar: Annotated[Path | None, typer.Option("--from", help="Reproduce the video of a sidecar .json.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --from: refuse, instead of warning, a sidecar with fields this vstar does not know or whose weights differ from the loaded ones.")] = False,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    no_memory_check: NoMemoryCheckOption = False,
    offload: OffloadOption = None,
    frame_chunk: FrameChunkOption = None,
    max_memory: MaxMemoryOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate a video in one pass, with per-frame synopsis conditioning and TAR, plus a JSON sidecar.

    Every option, the output path and the memory estimate are checked before an LLM is asked or a model is
    loaded; the output and its sidecar are claimed first, so a second run writing them fails at once.
    """
    from vstar.backbones import DEFAULT_MODEL
    from vstar.backbones.registry import get_spec
    from vstar.backbones.weights_identity import weights_identity
    from vstar.io import output_kind, sidecar_path
    from vstar.noise.cli import check_noise_shape, noise_options, noise_path, recorded_noise
    from vstar.outputs import check_sidecar_of, check_writable, claim_outputs, slug
    from vstar.resources import check_max_memory
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
        setting_flags(frames=frames, height=height, width=width, steps=steps, guidance=guidance,
                      negative_prompt=negative_prompt, interpolation=interpolation, cond_fps=cond_fps, fps=fps,
                      seed=seed),
        tar_flags(tar, no_tar, tar_max_mode, tar_strength, tar_step_fraction),
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
    if source is not None:
        spec.defaults.check_states_fit(len(source["states"]), config.num_frames, "use more --frames or fewer states")
    name = prompt or (source["prompt"] if source else None) or (source["states"][0] if source else "video")
    out = out or Path("outputs") / f"{slug(name)}-{config.seed}.mp4"
    kind = output_kind(out)
    sidecar = sidecar_path(out)
    check_writable(sidecar, overwrite, "sidecar")
    check_sidecar_of(sidecar, out)
    check_writable(out, overwrite, "frames" if kind == "png" else "video", sidecar)
    noise_outputs = [noise_path(out)] if noise_plan is not None or noise is not None else []
    for path in noise_outputs:
        check_writable(path, overwrite, "noise", sidecar)
    torch_device, torch_dtype = run_device(device, dtype or (recorded.dtype if recorded else None), offload)
    chunk = memory_plan(model, config, device=torch_device, dtype=torch_dtype, upscale=upscale,
                        max_memory=max_memory, offload=offload, frame_chunk=chunk, check=not no_memory_check,
                        quiet=quiet)

    with claim_outputs(out, sidecar, *noise_outputs):
        if source is None:
            source = asked_synopsis(prompt or "", llm, states, style, quiet)
        prompt, chosen_states = source["prompt"], source["states"]
        pipe = load_pipeline(model, model_path, torch_device, torch_dtype, offload, quiet, f", seed {config.seed}")
        weights = weights_identity(pipe.backbone)
        if recorded is not None:
            check_same_weights(recorded.weights, weights, from_sidecar, strict, quiet)
        if noise_plan is not None:
            noise = noise_plan.optimize(pipe, prompt, chosen_states, config, progress=not quiet)
        result = pipe(prompt, chosen_states, config=config, progress=not quiet, check_memory=False,
                      latents=noise.latents if noise is not None else None, frame_chunk=chunk)
        write_generation(result, out, config=config, source=source, model=model, model_path=model_path, pipe=pipe,
                         upscale=upscale, weights=weights, noise=noise,
                         noise_out=noise_outputs[0] if noise is not None else None, overwrite=overwrite,
                         command=recorded_command(sys.argv))
    typer.echo(f"wrote {out} ({len(result.frames[0])} frames) and {sidecar}")
