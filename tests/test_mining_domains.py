"""Domain classification: the ImageNet -> domain map and the open_clip path on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mining.config import DEFAULT_DOMAINS, MiningConfig
from mining.domains import ClipDomainClassifier, imagenet_domain_map, label
from mining.filter import apply_filter


def test_imagenet_map_covers_every_class_with_sensible_domains():
    from core.features import imagenet_class_names

    names = imagenet_class_names()
    m = imagenet_domain_map(DEFAULT_DOMAINS, names)
    assert m.shape == (1000, len(DEFAULT_DOMAINS)) and (m.sum(1) == 1).all()
    expect = {"tabby": "animals", "pizza": "food", "sports car": "vehicles", "seashore": "scenery",
              "laptop": "products", "comic book": "art", "groom": "people", "airliner": "vehicles"}
    for cls, dom in expect.items():
        assert DEFAULT_DOMAINS[int(m[names.index(cls)].argmax())] == dom, cls
    assert (m.sum(0) > 0).all()  # every domain receives classes
    # unknown domains: classes of unconfigured domains fall to "other"
    m2 = imagenet_domain_map(("animals", "other"), names)
    assert m2[names.index("pizza"), 1] == 1


def test_clip_path_on_tiny_random_model():
    import open_clip
    from open_clip.model import CLIP

    model = CLIP(
        embed_dim=16,
        vision_cfg=dict(layers=1, width=32, patch_size=16, image_size=32, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    )
    clf = ClipDomainClassifier(("animals", "food", "cars"), model=model,
                               preprocess=open_clip.image_transform(32, is_train=False),
                               tokenizer=open_clip.get_tokenizer("ViT-B-32"))
    p = clf.probs([Image.new("RGB", (50, 40)), Image.new("RGB", (64, 64), "red")], ["a dog", ""])
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1)
    with pytest.raises(ValueError, match="pretrained"):
        ClipDomainClassifier(DEFAULT_DOMAINS, "ViT-B-32", None)  # never silently random weights


def test_filter_reasons():
    cfg = MiningConfig(min_quality=0.5, allowed_domains=("animals",), min_domain_score=0.3)
    row = {"key": "k", "url": "u", "quality": 0.9, "domain": "animals", "domain_score": 0.8}
    assert apply_filter(row, cfg)[0] is row
    assert apply_filter(dict(row, quality=0.2), cfg)[1]["reason"] == "low_quality"
    assert apply_filter(dict(row, domain="food"), cfg)[1]["reason"] == "domain_excluded"
    assert apply_filter(dict(row, domain_score=0.1), cfg)[1]["reason"] == "domain_uncertain"
    (dom, js, best), = label(np.array([[0.1, 0.7, 0.2]]), ("a", "b", "c"))
    assert dom == "b" and best == 0.7 and '"b": 0.7' in js


def test_config_from_dict_parses_lists_and_rejects_unknown():
    cfg = MiningConfig.from_dict({"allowed_domains": "food, animals", "domains": ["a", "b"]})
    assert cfg.allowed_domains == ("food", "animals") and cfg.domains == ("a", "b")
    with pytest.raises(ValueError):
        MiningConfig.from_dict({"nope": 1})
