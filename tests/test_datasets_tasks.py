"""The Table-1 tasks added to the mixture: faces by person (CelebA and a person-grouped folder),
text-to-image on art, depth through the real loader with a tiny random DPT, the token limit, and
weighted mixing on a real input."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from core import storage
from datasets.faces import attribute_caption, load_faces
from datasets.real_inputs import write_inputs
from datasets.shards import iter_samples, list_shards
from tests.conftest import shared_subset
from tests.test_datasets_pipeline import stand_in_tools


def _jpeg(seed: int, size=(64, 80)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).resize(size, Image.BICUBIC).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def coco_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_in")
    write_inputs(str(shared_subset("coco_mini")), str(root), n=40)
    return root


def test_attribute_captions_read_as_english():
    assert attribute_caption("Male Young Smiling Black_Hair Eyeglasses No_Beard") == \
        "a smiling young man with black hair, wearing glasses"
    assert attribute_caption("Wavy_Hair Brown_Hair Wearing_Earrings Wearing_Lipstick Young") == \
        "a young woman with wavy brown hair, wearing earrings and lipstick"
    assert attribute_caption("Male Bald Mustache") == "a bald man with a mustache"
    assert attribute_caption("Male Brown_Hair") == "a man with brown hair and a beard"
    assert attribute_caption("") == "a person's face"


def test_person_folder_layout_groups_and_counts(tmp_path):
    for p, n in (("ann", 5), ("bob", 4), ("cy", 2)):
        (tmp_path / p).mkdir()
        for i in range(n):
            (tmp_path / p / f"{i}.jpg").write_bytes(_jpeg(hash((p, i)) % 1000))
    (tmp_path / "ann" / "0.txt").write_text("ann at the beach")
    (tmp_path / "bob" / "broken.jpg").write_bytes(b"not a jpeg")
    people, data, stats = load_faces(str(tmp_path))
    assert [p["person"] for p in people] == ["ann", "bob"]
    assert stats == {"images_read": 12, "images_unreadable": 1, "people": 2, "people_too_few_images": 1}
    assert len(data) == 9 and "ann at the beach" in people[0]["captions"].values()


def test_celeba_faces_become_subject_samples_of_one_person(coco_in, tmp_path):
    from pipelines.build_tasks import run

    faces = shared_subset("celeba_faces")
    s = run(
        str(coco_in),
        str(tmp_path / "out"),
        faces_dir=str(faces),
        tasks=["subject_faces", "subject_faces_hq"],
        seed=0,
        tools=stand_in_tools(),
        max_samples=12,
        shard_size=8,
    )
    assert s["samples"] == {"subject_faces": 12}
    assert s["inputs"]["faces"]["subject_faces"]["people"] == 100
    meta = {}
    import csv

    for r in csv.DictReader(open(faces / "metadata.csv")):
        meta[r["file"].rsplit("/", 1)[-1]] = r["identity"]
    for smp in iter_samples(list_shards(str(tmp_path / "out" / "shards"))):
        assert [c.marker for c in smp.context] == ["[ref#1]", "[ref#2]", "[ref#3]"]
        assert smp.target_key not in {c.key for c in smp.context}
        for m in ("[ref#1]", "[ref#2]", "[ref#3]"):
            assert smp.instruction.count(m) == 1
        assert smp.meta["person"] in set(meta.values())
    card = (tmp_path / "out" / "card.md").read_text()
    assert "subject_faces_hq" in card and "--faces-hq-dir" in card  # missing dataset with its reason


def test_art_domain_pairs_go_to_t2i_art(coco_in, tmp_path):
    from pipelines.build_tasks import run

    rows = storage.read_parquet(str(coco_in / "mined" / "kept")).to_pylist()
    for r in rows[:10]:
        r["domain"] = "art"
    src = tmp_path / "in"
    storage.write_parquet(
        rows,
        str(src / "mined" / "kept" / "part-00000.parquet"),
        storage.read_parquet(str(coco_in / "mined" / "kept")).schema,
    )
    s = run(
        str(src),
        str(tmp_path / "out"),
        tasks=["t2i", "t2i_art"],
        seed=0,
        tools=stand_in_tools(),
        shard_size=16,
    )
    # N = 40 pairs, weights 0.15 : 0.05 -> 30 : 10, and t2i_art has exactly 10 candidates
    assert s["samples"] == {"t2i": 30, "t2i_art": 10}
    assert s["mixture"]["t2i_art"]["paper"] == 0.05 and s["mixture"]["t2i"]["reached"] == 0.75


def test_depth_samples_with_a_tiny_random_dpt_through_the_real_loader(coco_in, tmp_path):
    transformers = pytest.importorskip("transformers")
    from pipelines.build_tasks import run

    cfg = transformers.DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    transformers.DPTForDepthEstimation(cfg).save_pretrained(tmp_path / "dpt")
    s = run(str(coco_in), str(tmp_path / "out"), depth_weights=str(tmp_path / "dpt"), tasks=["control_depth"],
            max_samples=3, seed=0, control_side=96, shard_size=8)
    assert s["samples"] == {"control_depth": 3}, s["sample_rejects"]
    for smp in iter_samples(list_shards(str(tmp_path / "out" / "shards"))):
        depth = Image.open(io.BytesIO(smp.context[0].image))
        assert depth.mode == "L" and max(depth.size) == 96 and smp.context[0].kind == "depth"
        assert np.asarray(depth).std() > 0


def test_too_long_instruction_is_a_counted_reject_not_a_cut(coco_in, tmp_path):
    from pipelines.build_tasks import run

    s = run(str(coco_in), str(tmp_path / "out"), tasks=["t2i"], max_samples=6, seed=0, tools=stand_in_tools(),
            max_tokens=12)
    assert s["sample_rejects"]["t2i"] == {"instruction_too_long": 6} and not s["samples"]
    ok = run(str(coco_in), str(tmp_path / "ok"), tasks=["t2i"], max_samples=6, seed=0, tools=stand_in_tools())
    assert ok["samples"] == {"t2i": 6} and ok["tokens"]["longest_written"] <= ok["tokens"]["limit"] == 77
    assert (
        json.loads((tmp_path / "ok" / "card.json").read_text())["tokens"]["template_overhead"][
            "subject_faces"
        ]
        <= 40
    )


class CountingHED:
    """Stand-in HED that records the batches it is given."""

    def __init__(self):
        self.batches = []

    def edges_batch(self, rgbs):
        self.batches.append([r.shape for r in rgbs])
        return [np.asarray(r, np.float32).mean(-1) / 255.0 for r in rgbs]

    def edges(self, rgb):
        return self.edges_batch([rgb])[0]


def test_control_maps_batched_once_per_image_at_control_side():
    from datasets.build import synthesize_batch
    from datasets.tasks.base import Job, Tools

    images = {f"k{i}": _jpeg(i, (300, 200)) for i in range(3)}
    jobs = [Job(t, k, values={"caption": "a red fox"}, order=n)
            for n, (t, k) in enumerate((t, k) for k in images for t in ("control_edge", "control_sketch"))]
    hed = CountingHED()
    tools = Tools(hed=hed, sketch=lambda e: (e > 0.3).astype(np.float32), control_side=96, max_side=256)
    out = synthesize_batch(jobs, images, tools, 0)
    assert [k for k, _ in out] == ["ok"] * 6
    assert hed.batches == [[(64, 96, 3)] * 3]  # one batched call, one pass per image for edge + sketch
    for _, s in out:
        assert Image.open(io.BytesIO(s.context[0].image)).size == (96, 64)
        assert Image.open(io.BytesIO(s.target)).size == (256, 171)
    assert tools.edge_cache == {}


def test_progress_line_on_the_given_stream():
    from datasets.run import Progress

    buf = io.StringIO()
    p = Progress(10, "tasks", every_s=0.0, stream=buf)
    p.start()
    p.update(3, 1)
    assert (
        buf.getvalue().startswith("tasks: 4/10 samples (3 ok, 1 rejected), ")
        and "samples/s" in buf.getvalue()
    )
