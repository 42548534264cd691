"""The official face alignment: a least-squares similarity onto a 288x288 head crop.

The official code (DCT-Net `warp_and_crop_face`, from the mtcnn-pytorch `align_trans` /
`matlab_cp2tform` helpers) solves the least-squares similarity that maps the *reference*
points onto the *image* points (so the residual is measured in image pixels) and inverts it
for the image -> crop warp. It also tries the mirrored fit and keeps it when it fits better
(never the case for a real face, but kept for parity). Both matrices are returned: `M`
(image -> crop) warps the crop out, `M_inv` (crop -> image) pastes the head back, exactly
as the official code passes them to `cv2.warpAffine`.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 288
# Image-left eye, image-right eye, nose tip, image-left and image-right mouth corner, in the
# 288x288 crop: the official reference points for crop_size 288, ratio 0.75 (about
# (111.78, 137.63), (179.74, 137.25), (145.98, 176.28), (118.06, 216.06), (174.34, 215.75)).
# The official code holds them as float32; these are those float32 values, recovered from the
# reference transforms (with the 2-decimal points the fit would be off by up to 0.1 px).
REFERENCE_POINTS = np.array([[111.78243255615234, 137.62857055664062],
                             [179.73989868164062, 137.25270080566406],
                             [145.97715759277344, 176.27772521972656],
                             [118.05936431884766, 216.06202697753906],
                             [174.3362274169922, 215.75076293945312]], np.float64)
WHITE = (255, 255, 255)


def _nonreflective(uv: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """3x3 (row-vector form, as matlab_cp2tform) least-squares similarity mapping xy -> uv."""
    x, y = xy[:, :1], xy[:, 1:]
    n = len(xy)
    one, zero = np.ones((n, 1)), np.zeros((n, 1))
    a = np.vstack([np.hstack([x, y, one, zero]), np.hstack([y, -x, zero, one])])
    b = np.vstack([uv[:, :1], uv[:, 1:]])
    sc, ss, tx, ty = np.linalg.lstsq(a, b, rcond=None)[0][:, 0]
    return np.array([[sc, -ss, 0.0], [ss, sc, 0.0], [tx, ty, 1.0]])


def _apply(t: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.hstack([pts, np.ones((len(pts), 1))]) @ t[:, :2]


def similarity_transform(points: np.ndarray, reference: np.ndarray = REFERENCE_POINTS
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(M, M_inv): 2x3 float64, image -> crop and crop -> image, fitted as the official code
    does (`get_similarity_transform_for_cv2(src=points, dst=reference)`)."""
    src = np.asarray(points, np.float64).reshape(-1, 2)
    dst = np.asarray(reference, np.float64).reshape(-1, 2)
    # findSimilarity(uv=src, xy=dst): fit dst -> src, i.e. crop -> image ("Tinv").
    t_inv = _nonreflective(src, dst)
    t = np.linalg.inv(t_inv)
    t[:, 2] = (0.0, 0.0, 1.0)
    # The mirrored candidate; the official code keeps whichever maps src closer to dst.
    dst_r = dst.copy()
    dst_r[:, 0] *= -1
    t2r_inv = _nonreflective(src, dst_r)
    t2r = np.linalg.inv(t2r_inv)
    t2r[:, 2] = (0.0, 0.0, 1.0)
    t2 = t2r @ np.diag([-1.0, 1.0, 1.0])
    if np.linalg.norm(_apply(t, src) - dst) > np.linalg.norm(_apply(t2, src) - dst):
        t = t2
        t_inv = np.linalg.inv(t2)
    return np.ascontiguousarray(t[:, :2].T), np.ascontiguousarray(t_inv[:, :2].T)


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def warp_crop(frame: np.ndarray, m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The 288x288 head crop of `frame` under `m` (image -> crop): bilinear, white border."""
    return cv2.warpAffine(frame, np.asarray(m, np.float64), (CROP_SIZE, CROP_SIZE), dst=out,
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=WHITE)
