"""The app's fixed numbers: what one upload may cost to decode, how many requests are served at once and how many
wait, how many outputs are kept, how its output folders are named, and how runtimes are measured."""

from __future__ import annotations

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_DURATION_S = 600.0
MAX_SIDE = 4096
MAX_DECODE_S = 10.0  # decoding time allowed per request; a long or huge upload is stopped, not waited for
MAX_DECODE_PIXELS = 5e10  # pixels the 45 frames' span may hold: more cannot decode within MAX_DECODE_S (refused)
HEAVY_DECODE_PIXELS = 5e8  # pixels to decode above which an upload is large (about 0.3 s of decoding here)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".gif")
CONCURRENCY = 2  # predictions at once (one per core here); the others wait
HEAVY_DECODES = 1  # large uploads decoded at once, beside the predictions
HEAVY_WAITING = 2  # large uploads that may wait for their turn; more are refused at once
SERVING_SLOTS = CONCURRENCY + HEAVY_DECODES + HEAVY_WAITING  # requests in the app at once: large uploads never
#   take more than HEAVY_DECODES + HEAVY_WAITING of them, so CONCURRENCY are always left for normal requests
QUEUE_SIZE = 100  # waiting requests beyond this are refused at once instead of waiting minutes
MAX_KEPT_OUTPUTS = 64  # output folders kept (3 files, ~0.4 MB each): the oldest go first
WORKDIR_PREFIX, MARKER = "vidpred-app-", ".vidpred-app.json"  # the app's folder in Gradio's, and what marks it
VIDEO_MODELS = 4  # models shown beside the ground truth in the side-by-side video (5 panels ≈ 970 px wide)
TIMING_REPEATS = 3
