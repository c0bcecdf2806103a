"""The embedding stage beside clip-retrieval's ``clip_inference``, same images, same open_clip model.

    python -m bench.peers_embed [--n 192] [--model ViT-B-32] [--batch 64] [--rounds 2]

Both sides get the same model object (random init: no CLIP weights exist offline; speed does not
depend on the weights), the same images and captions, the same torch thread count, and write the
same clip-retrieval layout (img_emb/, text_emb/, metadata/):

- ours: ``clustering.embeddings_io.embed_rows`` + ``write_shard`` (validated decode, image and text
  vectors, and also pHash/dHash/thumbnail per image, which clip_inference does not compute);
- clip-retrieval 2.45 ``clip_inference`` on the same images as one img2dataset-layout tar
  (input_format=webdataset, sequential distributor, one preprocessing worker; its input_format=files
  cannot pair images with captions in 2.45: its keys keep the file extension), with its all_clip
  loader patched to return that model.

clip-retrieval is installed by ``make bench-peers`` without its dependencies (it pins numpy<2 and
open_clip<3; it runs with the versions here). Rounds alternate the sides; each side's best is kept.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def _images(n: int) -> list[tuple[str, bytes, str]]:
    """(key, JPEG bytes, caption): COCO val images when ../shared/data is present, else procedural ones."""
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "coco_mini", "val2017")
    files = sorted(glob.glob(os.path.join(root, "*.jpg")))[:n]
    out = [(f"{i:06d}", open(f, "rb").read(), f"a photo number {i}") for i, f in enumerate(files)]
    rng = np.random.default_rng(0)
    while len(out) < n:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
        out.append((f"{len(out):06d}", buf.getvalue(), f"noise image {len(out)}"))
    return out


def peer_status() -> str | None:
    """None when clip_inference imports (without the package's server imports), else why not."""
    try:
        _import_clip_inference()
    except Exception as exc:  # noqa: BLE001 - the reason is reported
        return (
            f"clip-retrieval's clip_inference not importable ({type(exc).__name__}: {exc}); "
            "run `make bench-peers`"
        )
    return None


def _import_clip_inference():
    """clip_inference's modules. all_clip imports OpenAI's ``clip`` package for backends not used here
    (clip-anytorch needs the removed pkg_resources): an empty stand-in module goes on PYTHONPATH, so
    the processes clip_inference spawns for its loggers import it too."""
    stub = os.path.join(tempfile.gettempdir(), "bench_peers_clip_stub")
    os.makedirs(os.path.join(stub, "clip"), exist_ok=True)
    open(os.path.join(stub, "clip", "__init__.py"), "a").close()
    if stub not in sys.path:
        sys.path.insert(0, stub)
        os.environ["PYTHONPATH"] = os.pathsep.join([stub, os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    from clip_retrieval.clip_inference import main, mapper, worker

    return main, mapper, worker


def ours(embedder, items, out: str) -> float:
    from clustering import embeddings_io
    from core.contracts import make_record

    rows = [make_record(key=k, url=f"file:{k}.jpg", caption=c, image=b, source="bench") for k, b, c in items]
    t = time.perf_counter()
    metas, img, txt, rejects = embeddings_io.embed_rows(rows, embedder, batch_size=embedder.batch_size)
    embeddings_io.write_shard(out, 0, metas, img, txt, rejects)
    sec = time.perf_counter() - t
    assert img.shape[0] == len(items)
    return sec


def peer(embedder, folder: str, out: str, batch: int, n_items: int) -> float:
    main_mod, mapper, worker = _import_clip_inference()
    loader = lambda *a, **k: (embedder.model, embedder.preprocess, embedder.tokenizer)  # noqa: E731
    mapper.load_clip = worker.load_clip = loader
    t = time.perf_counter()
    main_mod.main(folder, out, input_format="webdataset", batch_size=batch, num_prepro_workers=1,
                  enable_text=True, enable_image=True, enable_metadata=False, clip_model="bench",
                  wds_number_file_per_input_file=n_items)
    sec = time.perf_counter() - t
    n = np.load(glob.glob(os.path.join(out, "img_emb", "*.npy"))[0]).shape[0]
    assert n > 0, "clip_inference wrote no embeddings"
    return sec


def main(argv: list[str] | None = None) -> int:
    import torch

    from clustering.openclip_embedder import OpenClipEmbedder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    items = _images(a.n)
    embedder = OpenClipEmbedder(a.model, None, device="cpu", batch_size=a.batch)
    missing = peer_status()
    print(
        f"{a.n} images, open_clip {a.model} (random init), batch {a.batch}, "
        f"torch threads {torch.get_num_threads()}; "
        f"peer: {missing or 'clip_inference importable'}"
    )
    tmp = tempfile.mkdtemp(prefix="bench_embed_")
    try:
        from clustering.shards import tar_bytes

        folder = os.path.join(tmp, "00000.tar")  # img2dataset's layout, clip_inference's usual input
        open(folder, "wb").write(tar_bytes([(k, [("jpg", b), ("txt", c.encode())]) for k, b, c in items]))
        best = {"ours": float("inf"), "clip_inference": float("inf")}
        for r in range(a.rounds):
            best["ours"] = min(best["ours"], ours(embedder, items, os.path.join(tmp, f"ours{r}")))
            if not missing:
                best["clip_inference"] = min(
                    best["clip_inference"],
                    peer(embedder, folder, os.path.join(tmp, f"peer{r}"), a.batch, a.n),
                )
        print(f"ours (embed_rows + write_shard)   {a.n / best['ours']:7.1f} images/s")
        if missing:
            print(f"clip-retrieval clip_inference    not run: {missing}")
        else:
            print(f"clip-retrieval clip_inference    {a.n / best['clip_inference']:7.1f} images/s")
            print(
                f"ratio ours / clip_inference      {best['clip_inference'] / best['ours']:7.2f}x "
                "(goal >= 1.0x)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
