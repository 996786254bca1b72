"""Stream images through a tflbayes bundle on a Coral Edge TPU (Dev Board / USB Accelerator) or the CPU.

    python stream.py BUNDLE --images DIR [--edgetpu [--device usb]] [--json]
    python stream.py BUNDLE --camera 0 --edgetpu --frames 100

For every image (``.png``/``.jpg``/``.bmp`` through Pillow, ``.npy`` arrays as they are) or camera
frame (OpenCV), prints the decision (a class name, or ``abstain`` where the calibrated uncertainty
threshold of the bundle says "I don't know"), the class probability, the total / aleatoric /
epistemic uncertainty in nats and the invoke latency. Needs only the tflbayes runtime
(``pip install tflbayes``: ai-edge-litert and numpy) and, with ``--edgetpu``, Coral's Edge TPU
runtime ``libedgetpu.so.1`` and a bundle converted with ``precision="edgetpu"`` and compiled with
the ``edgetpu_compiler`` command printed by ``tflbayes convert``. Without ``--edgetpu`` the same
bundle runs its int8 graphs on the CPU (the path the tests exercise).

Images are converted to the bundle's input: grey (or RGB) by its channel count, resized to its
height x width, scaled to [0, 1] (``--invert`` for dark digits on a light background, as a camera
sees a digit written on paper).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm")


def to_input(image: np.ndarray, input_shape, invert: bool = False) -> np.ndarray:
    """An image ``[H, W]`` / ``[H, W, C]`` (uint8 0..255 or float) as one bundle input ``input_shape``, in [0, 1]."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    if len(input_shape) not in (2, 3):
        raise ValueError(f"the bundle takes inputs of shape {tuple(input_shape)}, not images")
    h, w, c = tuple(input_shape) + ((1,) if len(input_shape) == 2 else ())
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"an image must be [H, W] or [H, W, C]; received shape {img.shape}")
    if img.shape[-1] != c:  # channel conversion: RGB(A) -> grey by luminance, grey -> RGB by repetition
        rgb = img[..., :3]
        img = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] if c == 1 else np.repeat(img[..., :1], c, -1)
    if img.shape[:2] != (h, w):
        from PIL import Image

        chans = [np.asarray(Image.fromarray(img[..., k]).resize((w, h), Image.BILINEAR)) for k in range(c)]
        img = np.stack(chans, axis=-1).astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi > 1.0 or lo < 0.0:
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if invert:
        img = 1.0 - img
    return img.reshape(tuple(input_shape)).astype(np.float32)


def folder_frames(folder) -> Iterator[Tuple[str, np.ndarray]]:
    """``(name, image)`` of every image file in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + (".npy",))
    if not files:
        raise FileNotFoundError(f"{folder} holds no {', '.join(IMAGE_SUFFIXES + ('.npy',))} files")
    for p in files:
        if p.suffix.lower() == ".npy":
            yield p.name, np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                yield p.name, np.asarray(im.convert("RGB"))


def camera_frames(index: int, count: int) -> Iterator[Tuple[str, np.ndarray]]:
    """``count`` frames from camera ``index`` (OpenCV, BGR -> RGB)."""
    try:
        import cv2
    except ImportError:
        raise RuntimeError("--camera needs OpenCV (pip install opencv-python-headless); use --images DIR") from None
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise RuntimeError(f"camera {index} cannot be opened")
    try:
        for i in range(count):
            ok, frame = cap.read()
            if not ok:
                break
            yield f"frame{i:05d}", frame[..., ::-1]
    finally:
        cap.release()


def classify(bundle, frames: Iterable[Tuple[str, np.ndarray]], invert: bool = False,
             threshold: Optional[float] = None) -> Iterator[dict]:
    """One result row per frame: decision, class, p, total / aleatoric / epistemic (nats), latency (ms)."""
    thr = bundle.thresholds or {}
    score = thr.get("score", "epistemic")
    limit = threshold if threshold is not None else thr.get(score)
    for name, image in frames:
        x = to_input(image, bundle.input_shape, invert=invert)[None]
        t0 = time.perf_counter()
        pred = bundle.predict(x)
        ms = (time.perf_counter() - t0) * 1e3
        k = int(pred.label[0])
        u = getattr(pred, score)
        value = None if u is None else float(u[0])
        abstain = limit is not None and value is not None and not value <= limit  # NaN abstains too
        yield {"frame": name, "decision": "abstain" if abstain else bundle.class_names[k],
               "class": bundle.class_names[k], "p": float(pred.probs[0, k]), "total": float(pred.total[0]),
               "aleatoric": None if pred.aleatoric is None else float(pred.aleatoric[0]),
               "epistemic": None if pred.epistemic is None else float(pred.epistemic[0]), "ms": ms}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Class or 'I don't know' with uncertainties, per image or camera frame.")
    ap.add_argument("bundle", help="a bundle folder written by tflbayes convert")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images (.png/.jpg/.bmp/.pgm) or .npy arrays")
    src.add_argument("--camera", type=int, help="camera index (OpenCV)")
    ap.add_argument("--frames", type=int, default=100, help="camera frames to process")
    ap.add_argument("--edgetpu", action="store_true", help="run the compiled graphs on a Coral Edge TPU")
    ap.add_argument("--device", default=None, help="Edge TPU: ':0', ':1', 'usb', 'pci', 'usb:0', ...")
    ap.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    ap.add_argument("--invert", action="store_true", help="dark digit on a light background")
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = ap.parse_args(argv)

    from tflbayes.errors import TflbayesError
    from tflbayes.runtime import load_bundle

    try:
        bundle = load_bundle(args.bundle, use_edgetpu=args.edgetpu, edgetpu_device=args.device)
        frames = folder_frames(args.images) if args.images else camera_frames(args.camera, args.frames)
        where = f"Edge TPU {args.device or '(first found)'}" if args.edgetpu else "CPU"
        if not args.json:
            print(f"{args.bundle}: {bundle.mode}/{bundle.precision}, S={bundle.num_samples}, on the {where}")
            print(f"{'frame':<20} {'decision':<10} {'p':>6} {'total':>7} {'aleat.':>7} {'epist.':>7} {'ms':>7}")
        for row in classify(bundle, frames, invert=args.invert, threshold=args.threshold):
            if args.json:
                print(json.dumps(row))
            else:
                fmt = lambda v: "   n/a" if v is None else f"{v:7.4f}"  # noqa: E731
                print(f"{row['frame']:<20} {row['decision']:<10} {row['p']:6.3f} {fmt(row['total'])} "
                      f"{fmt(row['aleatoric'])} {fmt(row['epistemic'])} {row['ms']:7.2f}")
    except (TflbayesError, OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
