"""open_clip loading code on a tiny random config, through a saved checkpoint."""

import numpy as np
import pytest
import torch
from PIL import Image

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_openclip_tiny_checkpoint_roundtrip(tmp_path):
    import open_clip

    from clustering.embedders import make_embedder
    from clustering.openclip_embedder import register_model_config

    register_model_config("tiny-clu-test", TINY)
    model = open_clip.create_model("tiny-clu-test")
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    emb = make_embedder(f"openclip:tiny-clu-test:{ckpt}")
    assert emb.shared_space and emb.dim == 16
    ims = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (30, 40), (10, 200, 10))]
    v = emb.embed_images(ims)
    t = emb.embed_texts(["a red square", ""])
    assert v.shape == (2, 16) and t.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.encode_image(emb.preprocess(ims[0]).unsqueeze(0)), dim=-1)
    np.testing.assert_allclose(v[0], ref[0].numpy(), atol=1e-5)


def test_missing_pretrained_weights_fail_clearly():
    from clustering.openclip_embedder import OpenClipEmbedder

    with pytest.raises(RuntimeError, match="weights unavailable"):
        OpenClipEmbedder("tiny-clu-test-missing", "/nonexistent/ckpt.pt")


def test_offline_retrieval_embedder_matches_the_bench_descriptor_and_keeps_the_imagenet_path():
    from bench.clustering_embedding import descriptor
    from clustering.embedders import make_embedder
    from clustering.retrieval_features import pooled, trunk_maps
    from core.features import ImageFeatures, _effnet

    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((120, 90), Image.BICUBIC)
           for _ in range(3)]
    emb = make_embedder("offline", faces=False)
    assert "rmac@320s" in emb.name and emb.dim == 1280 and not emb.shared_space
    v = emb.embed_images(ims)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        f = {"head_rmac@320s": pooled(trunk_maps(_effnet(), ims, 320))["head_rmac"].numpy()}
    np.testing.assert_allclose(v, descriptor(f, "head_rmac@320s"), atol=1e-5)
    # with the face part (the default): photos without a dominant face keep their vectors, plus zeros
    with_faces = make_embedder("offline")
    assert with_faces.dim == 1280 + 128 and "dlib-face128" in with_faces.name and with_faces.name != emb.name
    vf = with_faces.embed_images(ims)
    np.testing.assert_allclose(vf[:, :1280], v, atol=1e-6)
    assert not vf[:, 1280:].any()
    old = make_embedder("offline-imagenet")
    np.testing.assert_allclose(old.embed_images(ims), ImageFeatures().embed(ims), atol=1e-5)
    assert old.name != emb.name
