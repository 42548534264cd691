#!/usr/bin/env bash
# Side by side: the same run_video commands on two checkouts of this project, PNG outputs
# compared pixel by pixel, and the faces each run reports. For a restructuring that must not
# change what the tool draws:
#
#   git worktree add /tmp/before <commit>      # or: git archive <commit> | tar -x -C /tmp/before
#   TOONSTREAM_MODELS=../shared/models bash bench/same_output.sh /tmp/before .
#
# Prints, per configuration: frames, max |difference|, how many values differ, faces pasted.
set -euo pipefail
BEFORE=$(cd "$1" && pwd); AFTER=$(cd "${2:-.}" && pwd)
PY=${PYTHON:-python3}
MEDIA=$(cd "${TOONSTREAM_MODELS:?set TOONSTREAM_MODELS}/../media" && pwd)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$PY" - "$MEDIA" "$OUT" <<'PYEOF'
import sys, av
media, out = sys.argv[1], sys.argv[2]
def cut(src, dst, start, stop):
    with av.open(src) as i, av.open(dst, "w") as o:
        s = o.add_stream("libx264", rate=24)
        first = True
        for k, f in enumerate(i.decode(video=0)):
            if k >= stop:
                break
            if k < start:
                continue
            if first:
                s.width, s.height, s.pix_fmt = f.width, f.height, "yuv420p"
                first = False
            o.mux(s.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format="bgr24"), format="bgr24")))
        o.mux(s.encode())
cut(f"{media}/tears_640x360.mp4", f"{out}/tears40.mp4", 50, 90)   # a cut and a close-up
cut(f"{media}/event_640x480.mp4", f"{out}/event20.mp4", 0, 20)     # several small faces
PYEOF
i=0
while read -r clip args; do
  i=$((i + 1))
  for side in before after; do
    tree=$BEFORE; [ "$side" = after ] && tree=$AFTER
    mkdir -p "$OUT/$i/$side"
    (cd "$tree" && "$PY" run_video.py "$OUT/$clip" -o "$OUT/$i/$side/%04d.png" $args \
        --stats-json "$OUT/$i/$side.json" -y > "$OUT/$i/$side.log" 2>&1) || echo "($side failed: $OUT/$i/$side.log)"
  done
  "$PY" - "$OUT/$i" "$clip $args" <<'PYEOF'
import glob, json, sys
import cv2, numpy as np
d, what = sys.argv[1], sys.argv[2]
a, b = sorted(glob.glob(d + "/before/*.png")), sorted(glob.glob(d + "/after/*.png"))
diffs = [np.abs(cv2.imread(x, -1).astype(int) - cv2.imread(y, -1).astype(int)) for x, y in zip(a, b)]
faces = []
for side in ("before", "after"):
    try:
        f = json.load(open(f"{d}/{side}.json"))["items"][0].get("faces")
        faces.append(f and f["faces"])
    except (OSError, KeyError, IndexError, ValueError):
        faces.append("?")
print(f"{what:55s} frames {len(a)}/{len(b)}  max|diff| {max((int(x.max()) for x in diffs), default=-1)}"
      f"  differing values {sum(int((x > 0).sum()) for x in diffs)}  faces {faces[0]} -> {faces[1]}")
PYEOF
done <<'LIST'
tears40.mp4 --faces on
tears40.mp4 --faces on --precision fast
tears40.mp4 --faces on --background blur
tears40.mp4 --faces on --temporal off
tears40.mp4 --faces off
event20.mp4 --faces on
event20.mp4 --faces on --background color:#00ff00
LIST
