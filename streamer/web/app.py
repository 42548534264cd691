"""The Gradio page: Photo, Video and Webcam tabs over one ToonService.

- One style picker for all three tabs (a radio plus a gallery of previews; clicking a
  preview picks its style), one faces switch and one steady (temporal step) switch.
- Every event that runs the model is in one Gradio concurrency group, "device", with a limit
  of one: requests wait in Gradio's queue (bounded, `max_queue`) and the page shows their
  place in it. The service's lock backs this up for anything outside the queue.
- Webcam: `gr.Image(sources=["webcam"], streaming=True).stream(...)` opens one streaming
  event per browser session; the browser sends a frame every `stream_every` seconds into it
  and the server keeps only the newest one (Gradio overwrites the event's pending input: a
  latest-frame slot), so a frame that arrives while one is being stylised replaces the one
  waiting instead of queueing, and latency stays one frame however slow the device is.
  The trigger mode is left at Gradio's default for streams ("multiple": chunks go into the
  open stream); "once" or "always_last" would make the browser skip or hold every chunk
  after the first while the stream is open, so the picture would freeze.
- User errors (limits, unreadable files, unknown styles, missing models) come back as
  `gr.Error` with the command line's one-line message (the background controls' in the
  page's own words, background.py); anything else is logged with its traceback and shown
  as one line. A picture upload that is not a picture reaches our own checks too
  (`ImageUpload`), instead of failing in Gradio's preprocessing with a traceback.
- The background's colour picker shows only for `color`, its image upload only for
  `image`; a transparent result is shown over a checkerboard (PAGE_CSS), and downloads
  with its alpha channel.
"""
from __future__ import annotations

import logging
import os
import traceback
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls
import gradio as gr  # noqa: E402

from streamer.toon.background import parse_background  # noqa: E402

from .background import BACKGROUNDS, DEFAULT_COLOR, background_value  # noqa: E402
from .service import ToonService, UserError, message  # noqa: E402

log = logging.getLogger("toonstream.web")

CONCURRENCY_ID = "device"

#: results shown over a grey checkerboard (the background treatment's own 16 px squares,
#: levels 204 and 153), so what is transparent shows as such; an opaque result covers it.
#: The element is sized to the picture (Gradio stretches it over the whole box and letter-
#: boxes inside it, which would show the checkerboard around an opaque picture).
PAGE_CSS = """
.toon-result img, .toon-result video {
  background: repeating-conic-gradient(#cccccc 0 25%, #999999 0 50%) 0 0 / 32px 32px;
  width: auto !important; height: auto !important; max-width: 100%; max-height: 100%;
  margin: auto;
}
"""

_INTRO = """# Toonstream
Cartoonize portraits with DCT-Net: a photo, a video file (audio kept), or your webcam.
Pick a style below (click a preview), then use one of the tabs."""


def _error(text: str) -> gr.Error:
    """A message for the page (no server-side traceback for what the user can fix)."""
    try:
        return gr.Error(text, print_exception=False)
    except TypeError:  # an older Gradio 5
        return gr.Error(text)


def _fail(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        return _error(message(exc))
    from streamer.pipeline.core import PipelineError
    if isinstance(exc, PipelineError) and isinstance(exc.error, UserError):
        return _error(message(exc.error))
    log.error("unexpected error\n%s", "".join(traceback.format_exception(exc)))
    return _error(f"internal error: {type(exc).__name__}: {message(exc)}")


class ImageUpload(gr.Image):
    """gr.Image whose upload reaches the handler as the file even when PIL cannot open it:
    Gradio's own preprocessing would fail with "Could not preprocess input component ...
    UnidentifiedImageError" and a traceback in the server log; our checks (run_video's
    reader, the background image's) then say in one line what is wrong with it. The page
    shows it as a gr.Image (a template of it: the same front end)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - PIL's refusal: ours is the one the user reads
            path = getattr(payload, "path", None)
            if self.type != "filepath" or not path:
                raise _error("The upload is not a picture this page can read (PNG, JPEG, "
                             "WebP, BMP or TIFF).") from None
            return str(path)


def _webcam_options() -> dict[str, Any]:
    """Ask the browser for a VGA-sized camera picture: the model works at `live_size` anyway,
    and a 1080p frame costs upload time and a large PNG back for nothing."""
    import inspect

    video = {"width": {"ideal": 640}, "height": {"ideal": 480}}
    params = inspect.signature(gr.Image.__init__).parameters
    if "webcam_options" in params and hasattr(gr, "WebcamOptions"):  # Gradio 5.2x, 6
        return {"webcam_options": gr.WebcamOptions(constraints={"video": video})}
    if "webcam_constraints" in params:  # earlier Gradio 5
        return {"webcam_constraints": {"video": video}}
    return {}


def _style_row(service: ToonService) -> tuple[gr.Radio, gr.Checkbox, gr.Checkbox]:
    """The style choice (with a gallery of previews to click), the faces switch and the
    steady (temporal step) switch."""
    styles = service.styles
    previews = service.previews()
    with gr.Row(equal_height=True):
        style = gr.Radio(choices=styles, value=service.default_style, label="Style",
                         elem_id="style", scale=4)
        faces = gr.Checkbox(value=service.faces_available,
                            label="Faces: stylise each face with the head model",
                            elem_id="faces", scale=1, interactive=service.faces_available,
                            info=None if service.faces_available else
                            "the face detector is not installed: python -m "
                            "streamer.models fetch face mask")
        steady = gr.Checkbox(value=service.temporal_default,
                             label="Steady: no flicker between frames (videos, webcam)",
                             elem_id="temporal", scale=1)
    gallery = gr.Gallery(value=[(img, name) for name, img in previews], label="Styles",
                         columns=min(7, len(previews)), rows=1, height=180,
                         allow_preview=False, interactive=False, format="png",
                         elem_id="style-previews")

    def pick(evt: gr.SelectData) -> Any:
        i = evt.index if isinstance(evt.index, int) else evt.index[0]
        return styles[i] if 0 <= i < len(styles) else gr.skip()

    gallery.select(pick, None, style, queue=False)
    return style, faces, steady


# Every model run shares one worker: the device runs one thing at a time.
_ONE_AT_A_TIME = dict(concurrency_limit=1, concurrency_id=CONCURRENCY_ID)


def _background_row(service: ToonService) -> list:
    """The background choice (as --background) with its colour and image, each shown only
    while its choice is picked; they start as the command line's --background."""
    start = parse_background(service.default_background, check_image=False)
    kind = start.kind
    with gr.Row(equal_height=True):
        choice = gr.Radio(choices=list(BACKGROUNDS), value=kind, label="Background",
                          elem_id="background", scale=3,
                          info="the person is found on the input; transparent gives a PNG "
                               "(or WebM video) with alpha")
        color = gr.ColorPicker(value=str(start)[6:] if kind == "color" else DEFAULT_COLOR,
                               label="Colour", elem_id="background-color", scale=1,
                               visible=kind == "color")
        image = ImageUpload(value=str(start.image) if kind == "image" else None, type="filepath",
                            image_mode=None, sources=["upload"], label="Background image",
                            elem_id="background-image", height=120, scale=1,
                            visible=kind == "image")

    def show(picked: str) -> tuple:
        return gr.update(visible=picked == "color"), gr.update(visible=picked == "image")

    choice.change(show, choice, [color, image], queue=False, show_progress="hidden")
    return [choice, color, image]


def _photo_tab(service: ToonService, style: gr.Radio, faces: gr.Checkbox,
               bg: list) -> None:
    with gr.Tab("Photo", id="photo"):
        with gr.Row(equal_height=True):
            # An uploaded file reaches run_video as it is (type="filepath" hands over the
            # upload itself); a pasted picture is saved losslessly (PNG).
            # image_mode=None: the file as it is (Gradio would convert it to RGB and drop
            # an alpha channel run_video keeps)
            photo_in = ImageUpload(type="filepath", image_mode=None,
                                   sources=["upload", "clipboard"], format="png",
                                   label="Photo", elem_id="photo-in")
            photo_out = gr.Image(type="filepath", format="png", label="Cartoon",
                                 interactive=False, elem_id="photo-out",
                                 elem_classes=["toon-result"])
        photo_btn = gr.Button("Cartoonize photo", variant="primary", elem_id="photo-run")
        photo_file = gr.File(label="Download (PNG)", interactive=False, height=90,
                             elem_id="photo-file")

    def run_photo(path: str | None, style_name: str, use_faces: bool, bg_choice: str,
                  bg_color: str, bg_image: str | None):
        if not path:
            raise _error("Upload a photo first.")
        try:
            background = background_value(bg_choice, bg_color, bg_image)
            out = service.photo(path, style_name, use_faces, background)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            raise _fail(exc) from None
        return str(out), str(out)

    photo_btn.click(run_photo, [photo_in, style, faces, *bg], [photo_out, photo_file],
                    api_name="photo", **_ONE_AT_A_TIME)


def _video_tab(service: ToonService, style: gr.Radio, faces: gr.Checkbox,
               steady: gr.Checkbox, bg: list) -> None:
    with gr.Tab("Video", id="video"):
        lim = service.limits
        gr.Markdown(f"Videos up to {lim.max_video_seconds:g} s and "
                    f"{lim.max_file_size}; the audio is kept as it is.")
        with gr.Row(equal_height=True):
            video_in = gr.Video(sources=["upload"], format=None, include_audio=True,
                                label="Video", elem_id="video-in")
            video_out = gr.Video(format=None, label="Cartoon", interactive=False,
                                 elem_id="video-out", elem_classes=["toon-result"])
        video_btn = gr.Button("Cartoonize video", variant="primary", elem_id="video-run")
        video_file = gr.File(label="Download", interactive=False, height=90,
                             elem_id="video-file")

    def run_video(path: str | None, style_name: str, use_faces: bool, use_steady: bool,
                  bg_choice: str, bg_color: str, bg_image: str | None,
                  progress=gr.Progress()):
        if not path:
            raise _error("Upload a video first.")
        try:
            background = background_value(bg_choice, bg_color, bg_image)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            raise _fail(exc) from None
        progress(0.0, desc="starting")

        def report(fraction, frames, total):
            desc = f"{frames}/{total} frames" if total else f"{frames} frames"
            progress(fraction, desc=desc)

        try:
            out = service.video(path, style_name, use_faces, report, background,
                                on_warning=lambda text: gr.Warning(text), temporal=use_steady)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            raise _fail(exc) from None
        return str(out), str(out)

    video_btn.click(run_video, [video_in, style, faces, steady, *bg], [video_out, video_file],
                    api_name="video", **_ONE_AT_A_TIME)


def _webcam_tab(service: ToonService, style: gr.Radio, faces: gr.Checkbox,
                steady: gr.Checkbox, stream_every: float, bg: list) -> None:
    with gr.Tab("Webcam", id="webcam"):
        gr.Markdown(f"Your camera, stylised live at a working short side of "
                    f"{service.live_size} px. Frames that arrive while one is being "
                    f"stylised are dropped, so the picture stays current.")
        with gr.Row(equal_height=True):
            cam_in = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                              label="Camera", elem_id="cam-in", **_webcam_options())
            cam_out = gr.Image(label="Cartoon", interactive=False, streaming=True,
                               elem_id="cam-out", elem_classes=["toon-result"])

    def run_cam(frame, style_name: str, use_faces: bool, use_steady: bool, bg_choice: str,
                bg_color: str, bg_image: str | None, request: gr.Request):
        try:
            return service.webcam(frame, style_name, use_faces,
                                  getattr(request, "session_hash", "") or "",
                                  background_value(bg_choice, bg_color, bg_image),
                                  temporal=use_steady)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            raise _fail(exc) from None

    cam_in.stream(run_cam, [cam_in, style, faces, steady, *bg], [cam_out], api_name="webcam",
                  stream_every=stream_every, show_progress="hidden", time_limit=3600,
                  **_ONE_AT_A_TIME)


def build_app(service: ToonService, *, stream_every: float = 0.2,
              max_queue: int = 16) -> gr.Blocks:
    """The page for `service` (`.queue()` is done here; launch it with
    `launch(app, service, ...)` or Gradio's own `app.launch`)."""
    import inspect

    css = {"css": PAGE_CSS} if "css" in inspect.signature(gr.Blocks.__init__).parameters else {}
    with gr.Blocks(title="Toonstream", analytics_enabled=False,
                   delete_cache=(600, 3600), **css) as demo:
        gr.Markdown(_INTRO)
        style, faces, steady = _style_row(service)
        bg = _background_row(service)
        with gr.Tabs():
            _photo_tab(service, style, faces, bg)
            _video_tab(service, style, faces, steady, bg)
            _webcam_tab(service, style, faces, steady, stream_every, bg)
    demo.queue(default_concurrency_limit=1, max_size=max_queue)
    return demo


def launch(demo: gr.Blocks, service: ToonService, *, host: str = "127.0.0.1",
           port: int = 7860, auth: tuple[str, str] | None = None,
           block: bool = True, quiet: bool = False):
    """Start the server; with `block`, serve until Ctrl+C and then clean up."""
    import inspect

    # Gradio 6 takes the page's CSS at launch (Gradio 5 at gr.Blocks, see build_app)
    css = {"css": PAGE_CSS} if "css" in inspect.signature(demo.launch).parameters else {}
    result = demo.launch(server_name=host, server_port=port, auth=auth, **css,
                         max_file_size=service.limits.max_file_size, share=False,
                         inbrowser=False, ssr_mode=False, show_error=True, quiet=quiet,
                         prevent_thread_lock=not block)
    if block:
        service.close()
    return result
