"""Face photos grouped by person, for the paper's CelebA / CelebA-HQ subject rows.

Two layouts are read:

* ``metadata.csv`` with ``file`` and ``identity`` (and optionally ``attributes``, CelebA's set
  attribute names separated by spaces, or ``caption``): ``../shared/data/celeba_faces``;
* one sub-folder per person (``DIR/<person>/*.jpg``), an optional ``.txt`` caption beside an image:
  a user's own person-grouped folder.

Captions come from the CelebA attributes when there is no caption (``attribute_caption``). People
with fewer than ``min_images`` readable photos are left out and counted. Images are shrunk to
``max_side`` and re-encoded once, as the style images are.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter, defaultdict
from typing import Any

from core import storage
from core.contracts import url_key
from datasets.instruction import decode_image, encode_image

log = logging.getLogger(__name__)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_BYTES = 20 << 20  # a face file larger than this is skipped (bounded reads)

_HAIR = {"Black_Hair": "black", "Blond_Hair": "blond", "Brown_Hair": "brown", "Gray_Hair": "grey"}
_WEAR = [
    ("Eyeglasses", "glasses"),
    ("Wearing_Hat", "a hat"),
    ("Wearing_Earrings", "earrings"),
    ("Wearing_Necklace", "a necklace"),
    ("Wearing_Necktie", "a necktie"),
    ("Wearing_Lipstick", "lipstick"),
]


def person_word(attrs: set[str]) -> str:
    """"man" / "woman" from CelebA's ``Male`` attribute (absent = not male); "person" with no attributes."""
    if not attrs:
        return "person"
    return "man" if "Male" in attrs else "woman"


def attribute_caption(attributes: str) -> str:
    """A caption from CelebA attribute names, e.g. "a smiling young woman with wavy brown hair,
    wearing earrings and lipstick" (no attributes: "a person's face")."""
    a = set(attributes.split())
    if not a:
        return "a person's face"
    adj = [w for w, k in (("smiling", "Smiling"), ("young", "Young")) if k in a]
    hair = [c for k, c in _HAIR.items() if k in a][:1]
    texture = [t for t, k in (("wavy", "Wavy_Hair"), ("straight", "Straight_Hair")) if k in a][:1]
    bald = "Bald" in a
    parts = [f"a {' '.join(adj + (['bald'] if bald else []) + [person_word(a)])}"]
    has_hair = (hair or texture) and not bald
    if has_hair:
        parts[0] += f" with {' '.join(texture + hair)} hair"
    facial = [w for k, w in (("Mustache", "a mustache"), ("Goatee", "a goatee")) if k in a]
    if "Male" in a and "No_Beard" not in a and not facial:
        facial.append("a beard")
    if facial:
        parts[0] += (" and " if has_hair else " with ") + " and ".join(facial)
    wear = [w for k, w in _WEAR if k in a]
    if wear:
        parts.append("wearing " + (", ".join(wear[:-1]) + " and " + wear[-1] if len(wear) > 1 else wear[0]))
    return ", ".join(parts)


def _read_small(path: str) -> bytes | None:
    """Bytes of a regular file of at most MAX_BYTES, else None (local paths checked before reading)."""
    try:
        if "://" not in path and (not os.path.isfile(path) or os.path.getsize(path) > MAX_BYTES):
            return None
        data = storage.read_bytes(path)
    except Exception:  # noqa: BLE001 - unreadable = skipped, counted
        return None
    return data if len(data) <= MAX_BYTES else None


def _entries(folder: str) -> list[dict[str, str]]:
    """[{file (absolute), person, caption, attributes}] from metadata.csv or person sub-folders."""
    csv_path = storage.join(folder, "metadata.csv")
    out = []
    if storage.exists(csv_path):
        for r in csv.DictReader(io.StringIO(storage.read_bytes(csv_path).decode("utf-8-sig"))):
            person = (r.get("identity") or r.get("person") or "").strip()
            if r.get("file") and person:
                out.append(
                    {
                        "file": storage.join(folder, r["file"]),
                        "person": person,
                        "caption": (r.get("caption") or "").strip(),
                        "attributes": r.get("attributes") or "",
                    }
                )
        return out
    for f in sorted(storage.list_files(folder, "*/*")):
        if not f.lower().endswith(IMAGE_EXTS):
            continue
        txt = os.path.splitext(f)[0] + ".txt"
        cap = storage.read_bytes(txt).decode("utf-8", "replace").strip() if storage.exists(txt) else ""
        out.append(
            {"file": f, "person": os.path.basename(os.path.dirname(f)), "caption": cap, "attributes": ""}
        )
    return out


def load_faces(folder: str | None, max_side: int = 384, min_images: int = 4
               ) -> tuple[list[dict[str, Any]], dict[str, bytes], dict[str, int]]:
    """([{person, keys, captions: {key: caption}, word}], {key: JPEG bytes}, counts) of a face folder."""
    stats = {"images_read": 0, "images_unreadable": 0, "people": 0, "people_too_few_images": 0}
    if not folder:
        return [], {}, stats
    by_person: dict[str, list[dict[str, str]]] = defaultdict(list)
    for e in _entries(folder):
        by_person[e["person"]].append(e)
    people, data = [], {}
    for person in sorted(by_person):
        keys, caps, words = [], {}, Counter()
        for e in sorted(by_person[person], key=lambda x: x["file"]):
            stats["images_read"] += 1
            raw = _read_small(e["file"])
            try:
                img = decode_image(raw, max_side) if raw else None
            except Exception:  # noqa: BLE001 - a broken face image is skipped, counted
                img = None
            if img is None:
                stats["images_unreadable"] += 1
                continue
            key = url_key(e["file"])
            data[key] = encode_image(img, "jpg", quality=92)
            keys.append(key)
            caps[key] = e["caption"] or attribute_caption(e["attributes"])
            if e["attributes"].strip():
                words[person_word(set(e["attributes"].split()))] += 1
        if len(keys) < min_images:
            stats["people_too_few_images"] += 1
            for k in keys:
                data.pop(k, None)
            continue
        ranked = words.most_common()
        word = ranked[0][0] if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]) else "person"
        people.append({"person": person, "keys": keys, "captions": caps, "word": word})
    stats["people"] = len(people)
    return people, data, stats
