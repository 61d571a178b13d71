"""The page of ``vstar ui``: a Gradio Blocks layout wired to :mod:`vstar.ui.callbacks`.

One generation runs at a time (Gradio's queue; visitors behind it see their position); every other action is
light and not queued behind it. Input errors show the CLI's one-line message, never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from vstar.cli.common import error_code, error_message
from vstar.conditioning import INTERPOLATION_MODES
from vstar.ui import callbacks
from vstar.ui.callbacks import PageSettings
from vstar.ui.session import session_dir, ui_root

F = TypeVar("F", bound=Callable[..., Any])
GENERATION_QUEUE = "generation"  # the queue every generation waits in, one at a time
AUTO_STATES = "auto"  # the synopsis backend decides how many states

INTRO = ("Type a prompt, let **Suggest states** split it into visual states (edit, add, remove or reorder the "
         "lines), pick a model and a length, and **Generate**. Each state sits on a keyframe; Temporal Attention "
         "Regularization (TAR) keeps the frames changing. Load a sidecar (.json) to restore its settings.")


def page_errors(callback: F) -> F:
    """Show the library's input errors as their one-line message in the page (a bug stays a bug)."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception as err:
            if error_code(err) is None:
                raise
            raise gr.Error(error_message(err), print_exception=False) from None

    return wrapper  # type: ignore[return-value]


def field_updates(model: str) -> list[Any]:
    """Updates of the frames, TAR, steps, guidance, height, width and upscale fields for ``model``."""
    values = callbacks.model_settings(model)
    return [gr.update(choices=callbacks.frame_choices(model), value=values["frames"]),
            gr.update(choices=callbacks.tar_choices(model), value=values["tar"]),
            *(values[name] for name in ("steps", "guidance", "height", "width", "upscale"))]


def build_app(model: str | None = None) -> gr.Blocks:
    """The page, opening on ``model`` (default: the first available, ``toy-shapes`` offline)."""
    models = callbacks.available_models()
    model = model or models[0]
    if model not in models:
        raise ValueError(f"--model {model}: its weights are not here; choose one of {', '.join(models)} "
                         "(`vstar models`; download with `vstar generate --model NAME` first)")
    start = callbacks.default_settings(model)

    with gr.Blocks(title="vstar") as page:
        gr.Markdown("## vstar: longer, dynamic videos\n" + INTRO)
        suggested = gr.State(None)
        recorded = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                inputs = input_fields(start, models)
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                sidecar_in = gr.File(label="Load a sidecar (.json) to restore its settings", file_types=[".json"],
                                     type="filepath", height=120, elem_id="load-sidecar")
            with gr.Column(scale=1), gr.Tabs():
                with gr.Tab("Video"):
                    outputs = video_outputs()
                with gr.Tab("Temporal attention and metrics"):
                    attention = gr.Image(label="Temporal attention of the last generation per level", type="filepath",
                                         show_label=False, elem_id="attention")
                    metrics = gr.Textbox(label="Metrics (vstar evaluate)", lines=12, elem_id="metrics",
                                         elem_classes=["mono"])

        fields = [inputs[name] for name in PageSettings.names()]
        by_model = [inputs[name] for name in ("frames", "tar", "steps", "guidance", "height", "width", "upscale")]
        inputs["suggest"].click(page_errors(suggest), [inputs["prompt"], inputs["num_states"]],
                                [inputs["states"], suggested, inputs["notes"]], concurrency_limit=None)
        inputs["model"].input(field_updates, inputs["model"], by_model, concurrency_limit=None)
        sidecar_in.upload(page_errors(load_sidecar), sidecar_in, [*fields, recorded], concurrency_limit=None)
        generate.click(page_errors(run), [*fields, suggested, recorded], [*outputs, attention, metrics],
                       concurrency_limit=1, concurrency_id=GENERATION_QUEUE)
    return page


def input_fields(start: PageSettings, models: list[str]) -> dict[str, Any]:
    """The input components by :class:`PageSettings` field name, plus the suggestion's controls."""
    c: dict[str, Any] = {}
    c["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                             placeholder="a red circle on a black background turning into a blue square")
    with gr.Row():
        c["num_states"] = gr.Dropdown([AUTO_STATES, *range(2, 9)], value=AUTO_STATES, label="How many states",
                                      elem_id="num-states")
        c["suggest"] = gr.Button("Suggest states", elem_id="suggest", scale=0, min_width=200)
    c["states"] = gr.Textbox(label="Visual states, one per line (edit, add, remove or reorder the lines)", lines=4,
                             elem_id="states")
    c["notes"] = gr.Markdown(elem_id="notes")
    with gr.Row():
        c["model"] = gr.Dropdown(models, value=start.model, label="Model", elem_id="model")
        c["frames"] = gr.Dropdown(callbacks.frame_choices(start.model), value=start.frames, label="Frames",
                                  elem_id="frames")
    with gr.Row():
        c["tar"] = gr.Dropdown(callbacks.tar_choices(start.model), value=start.tar, allow_custom_value=True,
                               label="TAR preset", elem_id="tar")
        c["sigma"] = gr.Number(value=0, label="TAR sigma (0: the preset's)", minimum=0, elem_id="sigma")
        c["strength"] = gr.Slider(0, 2, value=start.strength, step=0.05, label="TAR strength", elem_id="strength")
    c["interpolation"] = gr.Radio(list(INTERPOLATION_MODES), value=start.interpolation, label="Interpolation")
    with gr.Row(equal_height=True):
        c["seed"] = gr.Number(value=start.seed, precision=0, minimum=0, label="Seed", elem_id="seed")
        c["random_seed"] = gr.Checkbox(value=start.random_seed, label="Random seed", elem_id="random-seed")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            c["steps"] = gr.Number(value=start.steps, precision=0, label="Steps", elem_id="steps")
            c["guidance"] = gr.Number(value=start.guidance, label="Guidance", elem_id="guidance")
        c["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id="negative-prompt")
        with gr.Row():
            c["height"] = gr.Number(value=start.height, precision=0, label="Height", elem_id="height")
            c["width"] = gr.Number(value=start.width, precision=0, label="Width", elem_id="width")
            c["upscale"] = gr.Number(value=start.upscale, precision=0, label="Upscale", elem_id="upscale")
    return c


def video_outputs() -> list[Any]:
    """The video tab: the video, its synopsis, keyframes, settings and the two downloads (in that order; the
    downloads are shown under the video)."""
    video = gr.Video(label="Video", autoplay=True, loop=True, interactive=False, height=320, elem_id="video")
    with gr.Row():
        downloads = [gr.DownloadButton("Download the video", elem_id="download-video"),
                     gr.DownloadButton("Download the sidecar", elem_id="download-sidecar")]
    synopsis = gr.Markdown(elem_id="synopsis")
    keyframes = gr.Gallery(label="Keyframes", columns=4, height=200, object_fit="contain", elem_id="keyframes")
    settings = gr.JSON(label="Settings", elem_id="settings")
    return [video, synopsis, keyframes, settings, *downloads]


def suggest(prompt: str, num_states: int | str) -> tuple[str, dict[str, Any], str]:
    """The suggested states (one per line), the suggestion as data and its notes."""
    synopsis = callbacks.suggest_states(prompt, None if num_states == AUTO_STATES else int(num_states))
    notes = "".join(f"- {note}\n" for note in synopsis["notes"])
    return "\n".join(synopsis["states"]), synopsis, f"States from **{synopsis['backend']}**.\n{notes}"


def load_sidecar(path: str | None) -> list[Any]:
    """The page's fields restored from an uploaded sidecar, and the sidecar kept for the next generation."""
    if path is None:
        raise ValueError("no sidecar was uploaded; drop a .json written by vstar generate or this page")
    settings, recorded = callbacks.settings_from_sidecar(path)
    frames = gr.update(choices=callbacks.frame_choices(settings.model), value=settings.frames)
    tar = gr.update(choices=callbacks.tar_choices(settings.model), value=settings.tar)
    values = dataclasses.asdict(settings) | {"frames": frames, "tar": tar}
    return [*values.values(), recorded]


def run(request: gr.Request, progress: gr.Progress = gr.Progress(), *values: Any) -> list[Any]:  # noqa: B008
    """Generate with the page's fields (then the suggestion and the loaded sidecar) into the visitor's session
    folder; the video tab's outputs, the attention figure and the metrics. (Gradio passes ``request`` and
    ``progress`` at their positions, before the inputs.)"""
    *fields, suggested, recorded = values
    settings = PageSettings(*fields)
    progress(0, desc="loading the model")
    result = callbacks.generate(settings, session_dir(request.session_hash), suggested, recorded,
                                progress=lambda done, total: progress((done, total), desc="denoising", unit="steps"))
    synopsis = "\n".join(f"{i + 1}. {state}" for i, state in enumerate(result.states))
    return [str(result.video), f"**Synopsis**\n\n{synopsis}", result.keyframes, result.settings,
            str(result.video), str(result.sidecar),
            str(result.attention) if result.attention else None, result.metrics]


def launch(model: str | None, host: str, port: int | None, share: bool) -> None:
    """Build the page and serve it until interrupted; the session folders' root may be served."""
    page = build_app(model)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(ui_root())],
                css=".mono textarea {font-family: ui-monospace, monospace;}")
