#!/usr/bin/env bash
# Fill gpu_data/ (git-ignored) with the few files bench/gpu_check.sh needs on a GPU machine
# that cannot reach ../shared or the network. Run it here, then carry gpu_data/ over:
#
#     bash bench/gpu_data.sh [SHARED]      # SHARED: the shared test data (default ../shared)
#
# What it writes (about 40 MB), all derived from SHARED:
#   pb/cartoon_<style>_bg.pb.gz   the 7 official-format weight files, gzipped (the check
#                                 unpacks them into models/dctnet/ and reads the .pb itself)
#   models/dctnet/alpha.jpg, models/face/yunet.onnx   head mask and face detector
#   golden_dctnet.npz             golden/dctnet: the 4 inputs and 28 TensorFlow outputs as
#                                 uint8 BGR arrays (no OpenCV needed to read them there)
#   media/tears_640x360.mp4       the shared clip, as is
#   media/tears_1280x720.mp4      the same 240 frames upscaled to 720p (Lanczos, CRF 16), so
#                                 the offline pipeline runs at the size model-only is quoted at
#   pylib/yaml, pylib/tqdm        pure-Python copies, used there only if missing
#   SHA256SUMS
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${1:-../shared}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT=gpu_data
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"/{pb,models/dctnet,models/face,media,pylib}
for f in "$SHARED"/models/dctnet/cartoon_*_bg.pb; do
  gzip -9 -c "$f" > "$OUT.tmp/pb/$(basename "$f").gz"
done
cp "$SHARED/models/dctnet/alpha.jpg" "$OUT.tmp/models/dctnet/"
cp "$SHARED/models/face/yunet.onnx" "$OUT.tmp/models/face/"
cp "$SHARED/media/tears_640x360.mp4" "$OUT.tmp/media/"
"$PY" - "$SHARED" "$OUT.tmp" <<'PYEOF'
import shutil, sys
from fractions import Fraction
from pathlib import Path

import av, cv2, numpy as np
import tqdm, yaml

shared, out = Path(sys.argv[1]), Path(sys.argv[2])
gold = shared / "golden" / "dctnet"
arrays = {p.stem: cv2.imread(str(p)) for p in sorted(gold.glob("*.png"))}
np.savez_compressed(out / "golden_dctnet.npz", **arrays)
# pure-Python parts only: compiled extensions would not match the other machine's Python
for mod in (yaml, tqdm):
    src = Path(mod.__file__).parent
    shutil.copytree(src, out / "pylib" / src.name,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
with av.open(str(shared / "media" / "tears_640x360.mp4")) as inp, \
        av.open(str(out / "media" / "tears_1280x720.mp4"), "w") as dst:
    v = inp.streams.video[0]
    o = dst.add_stream("libx264", rate=v.average_rate or Fraction(24),
                       options={"crf": "16", "preset": "medium"})
    o.width, o.height, o.pix_fmt = 1280, 720, "yuv420p"
    o.time_base = o.codec_context.time_base = v.time_base
    for f in inp.decode(v):
        img = cv2.resize(f.to_ndarray(format="bgr24"), (1280, 720), interpolation=cv2.INTER_LANCZOS4)
        g = av.VideoFrame.from_ndarray(img, "bgr24")
        g.pts, g.time_base = f.pts, f.time_base
        dst.mux(o.encode(g))
    dst.mux(o.encode())
PYEOF
(cd "$OUT.tmp" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT"
