"""The app's page (:func:`build_blocks`): its widgets, in the order they are shown, and their wiring to the event
handlers (:class:`~vidpred.app.handlers.Handlers`), queued so that at most ``SERVING_SLOTS`` requests are in the app
at once and ``QUEUE_SIZE`` wait."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .handlers import Handlers
from .settings import QUEUE_SIZE, SERVING_SLOTS, VIDEO_MODELS, VIDEO_SUFFIXES
from .startup import Served

if TYPE_CHECKING:
    import gradio as gr


def build_blocks(handlers: Handlers) -> gr.Blocks:
    """The Blocks of the app: a clip to pick, "Run all models", and the answer's widgets, wired to ``handlers``."""
    import gradio as gr

    with gr.Blocks(title="vidpred: compare video predictors", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# vidpred — 30 frames in, 15 frames out\nUpload a video or pick a sample; every model "
                    "and baseline predicts the next 15 frames (64×64 grayscale, as in training).")
        outputs = gr.State(None, time_to_live=3600, delete_callback=handlers.outputs.remove)  # the session's latest
        inputs, button = _clip_widgets(handlers.served)
        answer = _answer_widgets(handlers.served.note)
        button.click(handlers.run, [*inputs, outputs], [*answer, outputs],
                     api_name="predict", concurrency_limit=SERVING_SLOTS)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=SERVING_SLOTS)
    return demo


def _clip_widgets(served: Served) -> tuple[list[gr.components.Component], gr.Button]:
    """The clip to predict from: (upload, sample clip, start frame, frame step), and the button that runs the models."""
    import gradio as gr

    with gr.Row():
        upload = gr.File(label="upload a video", file_types=list(VIDEO_SUFFIXES), type="filepath")
        with gr.Column():
            sample = gr.Dropdown(choices=list(served.samples), value=None, label="or pick a sample clip")
            start = gr.Number(value=0, precision=0, minimum=0, label="start frame")
            step = gr.Number(value=served.data.frame_step, precision=0, minimum=1, label="frame step")
            button = gr.Button("Run all models", variant="primary")
    return [upload, sample, start, step], button


def _answer_widgets(note: str) -> list[gr.components.Component]:
    """The answer, top to bottom: status, context, prediction sheet, side-by-side video, metrics table and runtime
    plot (the status shows ``note`` until the first answer)."""
    import gradio as gr

    status = gr.Markdown(note or "Ready.", elem_id="status")
    context_image = gr.Image(label="context (every 3rd of the 30 frames)", type="filepath")
    sheet = gr.Image(label="the 15 predicted frames: one row per model, errors below (bright = wrong)",
                     type="filepath", elem_id="sheet")
    video = gr.Video(label=f"side by side: ground truth and up to {VIDEO_MODELS} models", format="mp4")
    table = gr.Dataframe(label="metrics (↓ lower is better, ↑ higher is better, ★ best) and inference time",
                         elem_id="metrics", wrap=True)
    plot = gr.Image(label="inference time of each model (measured when the app started)", type="filepath")
    return [status, context_image, sheet, video, table, plot]
