"""Domain classification of image-text pairs by image-text matching.

Three back-ends, same output (a probability per configured domain). The first two are one
class, :class:`SpaceDomainClassifier`, over an image-text space:

* **CLIP** (when ``clip_model`` is configured): zero-shot prompts in CLIP's own space. The image
  is scored against the domain prompts (``softmax(logit_scale * cos)``) and so is the caption;
  the two distributions are averaged. Real weights come from an open_clip pretrained tag or a
  local checkpoint; nothing is downloaded implicitly and nothing is faked when they are absent.
* **Offline image-text matching** (``extra={"domain_backend": "itm"}``): the same code over the
  shipped projection of EfficientNet-Lite0 and MiniLM vectors into one space (:mod:`mining.itm`).
  Trained on about 900 captioned images, it is less accurate on COCO domains than the map below
  (docs/mining.md), so it is not the default.
* **Offline ImageNet map** (default): the ImageNet EfficientNet-Lite0 classifier, its 1000 class
  probabilities summed into domains by :func:`imagenet_domain_map` (index ranges of the
  ImageNet hierarchy plus keyword rules on class names), combined with the cosine similarity
  between the MiniLM caption embedding and domain descriptions (``softmax(cos / 0.05)``).
  ``p = (1 - text_weight) * p_image + text_weight * p_text``.

Domains outside the built-in descriptions get the prompt "a photo of {domain}"; ImageNet
classes whose domain is not configured go to ``other`` (or are dropped if there is no ``other``).
"""

from __future__ import annotations

import json

import numpy as np

DOMAIN_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "art": (
        "a painting",
        "a drawing or illustration",
        "digital artwork",
        "a sculpture or statue",
        "a cartoon",
    ),
    "products": (
        "a product photo",
        "an object for sale",
        "a household item",
        "electronics or a gadget",
        "furniture",
        "clothing or shoes on display",
    ),
    "animals": ("a photo of an animal", "a pet dog or cat", "wild animals", "a bird", "farm animals"),
    "scenery": (
        "a landscape",
        "scenery with mountains, sea or sky",
        "a city street or buildings",
        "nature",
        "a beach or a lake",
    ),
    "food": (
        "a photo of food",
        "a meal on a plate",
        "fruit and vegetables",
        "a dish or a dessert",
        "a drink",
    ),
    "vehicles": (
        "a car",
        "a vehicle on the road",
        "a train, bus or truck",
        "an airplane",
        "a boat or a ship",
        "a motorcycle or a bicycle",
    ),
    "people": (
        "a photo of a person",
        "people",
        "a man",
        "a woman",
        "a boy or a girl",
        "a portrait of someone",
        "a person doing a sport",
    ),
    "other": ("a photo", "something else", "a document or text", "an abstract pattern"),
}

_VEHICLE_WORDS = (
    "car",
    "truck",
    "bus",
    "ambulance",
    "bicycle",
    "bike",
    "airliner",
    "airship",
    "warplane",
    "boat",
    "ship",
    "canoe",
    "locomotive",
    "train",
    "tractor",
    "jeep",
    "limousine",
    "minivan",
    "cab",
    "van",
    "trolleybus",
    "streetcar",
    "tram",
    "scooter",
    "moped",
    "go-kart",
    "golfcart",
    "snowmobile",
    "snowplow",
    "forklift",
    "harvester",
    "racer",
    "convertible",
    "wagon",
    "pickup",
    "carrier",
    "catamaran",
    "trimaran",
    "schooner",
    "yawl",
    "gondola",
    "liner",
    "speedboat",
    "fireboat",
    "lifeboat",
    "submarine",
    "space shuttle",
    "fire engine",
    "tank",
    "half track",
    "model t",
    "tricycle",
    "unicycle",
    "recreational vehicle",
    "mobile home",
    "bobsled",
    "dogsled",
    "oxcart",
    "horse cart",
    "jinrikisha",
    "amphibian",
    "wreck",
    "paddlewheel",
    "car wheel",
    "car mirror",
    "disk brake",
    "seat belt",
    "odometer",
    "grille",
    "thresher",
    "plow",
    "barrow",
    "shopping cart",
)
_PEOPLE_WORDS = (
    "ballplayer",
    "groom",
    "scuba diver",
    "gown",
    "abaya",
    "bikini",
    "brassiere",
    "cardigan",
    "cloak",
    "fur coat",
    "jean",
    "jersey",
    "kimono",
    "lab coat",
    "maillot",
    "miniskirt",
    "military uniform",
    "mortarboard",
    "overskirt",
    "pajama",
    "poncho",
    "sarong",
    "suit",
    "sweatshirt",
    "swimming trunks",
    "trench coat",
    "vestment",
    "wig",
    "hoopskirt",
    "stole",
    "feather boa",
    "bathing cap",
    "shower cap",
    "sombrero",
    "cowboy hat",
    "bonnet",
    "bearskin",
    "pickelhaube",
    "ski mask",
    "lipstick",
    "face powder",
    "hair spray",
    "apron",
    "bib",
    "sunglass",
    "bow tie",
    "windsor tie",
    "bolo tie",
    "crash helmet",
    "football helmet",
    "knee pad",
    "neck brace",
    "pirate",
    "academic gown",
    "balance beam",
    "horizontal bar",
    "parallel bars",
)
_SCENERY_WORDS = (
    "alp",
    "cliff",
    "coral reef",
    "geyser",
    "lakeside",
    "promontory",
    "sandbar",
    "seashore",
    "valley",
    "volcano",
    "breakwater",
    "dam",
    "pier",
    "dock",
    "suspension bridge",
    "steel arch bridge",
    "viaduct",
    "castle",
    "church",
    "palace",
    "monastery",
    "mosque",
    "stupa",
    "planetarium",
    "triumphal arch",
    "obelisk",
    "megalith",
    "water tower",
    "beacon",
    "boathouse",
    "barn",
    "greenhouse",
    "cliff dwelling",
    "yurt",
    "thatch",
    "tile roof",
    "fountain",
    "drilling platform",
    "lumbermill",
    "prison",
    "library",
    "cinema",
    "bakery",
    "restaurant",
    "bookshop",
    "butcher shop",
    "barbershop",
    "shoe shop",
    "tobacco shop",
    "toyshop",
    "grocery store",
    "confectionery",
    "boathouse",
    "bell cote",
    "dome",
    "patio",
    "stone wall",
    "worm fence",
    "picket fence",
    "chainlink fence",
    "maze",
    "radio telescope",
    "solar dish",
    "flagpole",
    "street sign",
    "traffic light",
    "mountain tent",
    "apiary",
    "rapeseed",
    "hay",
    "bubble",
    "carousel",
    "stage",
    "vault",
)
_ART_WORDS = (
    "comic book",
    "book jacket",
    "jigsaw puzzle",
    "mask",
    "totem pole",
    "theater curtain",
    "velvet",
    "prayer rug",
    "quilt",
    "paintbrush",
    "pedestal",
    "altar",
    "throne",
    "jack-o'-lantern",
    "sundial",
    "vase",
)
_OTHER_WORDS = (
    "web site",
    "crossword puzzle",
    "menu",
    "envelope",
    "daisy",
    "yellow lady's slipper",
    "corn",
    "acorn",
    "hip",
    "buckeye",
    "coral fungus",
    "agaric",
    "gyromitra",
    "stinkhorn",
    "earthstar",
    "hen-of-the-woods",
    "bolete",
    "ear",
    "spider web",
    "honeycomb",
    "knot",
    "chain",
    "coil",
    "screen",
    "window screen",
    "window shade",
    "shoji",
    "sliding door",
    "manhole cover",
    "toilet tissue",
)
_FOOD_WORDS = (
    "plate",
    "cup",
    "espresso",
    "red wine",
    "eggnog",
    "beer glass",
    "wine bottle",
    "beer bottle",
    "pop bottle",
    "soup bowl",
    "trifle",
    "meat loaf",
    "hotdog",
    "bagel",
    "pretzel",
    "pizza",
    "burrito",
    "mushroom",
    "consomme",
    "guacamole",
    "waffle iron",
    "rotisserie",
    "dough",
    "whiskey jug",
    "coffee mug",
    "teapot",
    "frying pan",
    "wok",
    "hot pot",
    "caldron",
    "mixing bowl",
)


ITM_TEXT_WEIGHT = 0.0  # chosen on the COCO val split (python -m bench.itm_coco), see docs/mining.md
ITM_SCALE: float | None = None  # None: the projection's learned logit scale


def imagenet_domain(index: int, name: str) -> str:
    """The default domain of ImageNet class ``index`` (named ``name``); rules in priority order."""
    n = name.lower()
    if index < 398:
        return "animals"  # ImageNet 0..397: fish, birds, reptiles, amphibians, invertebrates, mammals
    if 924 <= index <= 969 and index != 958:
        return "food"
    if n in _FOOD_WORDS:
        return "food"
    if n in _SCENERY_WORDS or 970 <= index <= 980:
        return "scenery"
    if n in _PEOPLE_WORDS or 981 <= index <= 983:
        return "people"
    if n in _ART_WORDS:
        return "art"
    if n in _OTHER_WORDS or index >= 984:
        return "other"
    if n in _VEHICLE_WORDS or any(n.endswith(" " + w) for w in ("car", "truck", "train", "van", "boat")):
        return "vehicles"
    return "products"  # the remaining man-made objects


def imagenet_domain_map(domains: tuple[str, ...], class_names: list[str]) -> np.ndarray:
    """(1000, D) 0/1 matrix: class i -> its domain (or ``other``) among ``domains``."""
    m = np.zeros((len(class_names), len(domains)), np.float32)
    pos = {d: j for j, d in enumerate(domains)}
    for i, name in enumerate(class_names):
        d = imagenet_domain(i, name)
        j = pos.get(d, pos.get("other"))
        if j is not None:
            m[i, j] = 1.0
    return m


def descriptions(domain: str) -> tuple[str, ...]:
    return DOMAIN_DESCRIPTIONS.get(domain, (f"a photo of {domain}",))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis, keepdims=True)


class OfflineDomainClassifier:
    """ImageNet classifier mapped to domains + MiniLM caption-description similarity."""

    backend = "offline-imagenet+minilm"

    def __init__(self, domains: tuple[str, ...], text_weight: float = 0.6, temperature: float = 0.05,
                 image_features=None, text_features=None):
        from core.features import ImageFeatures, TextFeatures, imagenet_class_names

        self.domains = tuple(domains)
        self.text_weight, self.temperature = text_weight, temperature
        self.image = image_features or ImageFeatures()
        self.text = text_features or TextFeatures()
        self.map = imagenet_domain_map(self.domains, imagenet_class_names())
        emb = [self.text.embed(list(descriptions(d))).mean(0) for d in self.domains]
        emb = np.stack(emb)
        self.desc = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def image_probs(self, images: list) -> np.ndarray:
        p = _softmax(self.image.logits(images).astype(np.float64)) @ self.map
        return p / np.maximum(p.sum(1, keepdims=True), 1e-12)

    def text_probs(self, captions: list[str]) -> np.ndarray:
        return _softmax(self.text.embed(captions).astype(np.float64) @ self.desc.T / self.temperature)

    def probs(self, images: list, captions: list[str]) -> np.ndarray:
        if not images:
            return np.zeros((0, len(self.domains)))
        w = self.text_weight
        return (1 - w) * self.image_probs(images) + w * self.text_probs(captions)


class SpaceDomainClassifier:
    """Image and caption matched to the domain prompts in one image-text space (the paper's way).

    ``space``: :class:`mining.itm.model.ItmSpace` (offline projection) or ``ClipSpace`` (open_clip).
    Each domain's prompt vector is the mean of its descriptions' vectors ("a photo of {d}");
    ``p = (1 - text_weight) softmax(scale cos(image, prompts))
    + text_weight softmax(scale cos(caption, prompts))``.
    """

    def __init__(self, domains: tuple[str, ...], space, text_weight: float = 0.5, scale: float | None = None):
        self.domains = tuple(domains)
        self.space, self.text_weight = space, text_weight
        self.scale = float(scale if scale is not None else space.logit_scale)
        self.backend = getattr(space, "name", type(space).__name__)
        vecs = [space.embed_texts([f"a photo of {s}" for s in descriptions(d)]).mean(0) for d in self.domains]
        v = np.stack(vecs).astype(np.float64)
        self.prompts = v / np.linalg.norm(v, axis=1, keepdims=True)

    def image_probs(self, images: list) -> np.ndarray:
        return _softmax(self.scale * self.space.embed_images(images).astype(np.float64) @ self.prompts.T)

    def text_probs(self, captions: list[str]) -> np.ndarray:
        return _softmax(self.scale * self.space.embed_texts([c or "" for c in captions]).astype(np.float64)
                        @ self.prompts.T)

    def probs(self, images: list, captions: list[str]) -> np.ndarray:
        if not images:
            return np.zeros((0, len(self.domains)))
        w = self.text_weight
        return (1 - w) * self.image_probs(images) + w * self.text_probs(captions)


class ItmDomainClassifier(SpaceDomainClassifier):
    """Offline default: the shipped EfficientNet-Lite0/MiniLM projection
    (``mining/weights/itm_projection.npz``).

    ``text_weight`` and ``scale`` were chosen on the COCO val split (``python -m bench.itm_coco``).
    """

    def __init__(
        self,
        domains: tuple[str, ...],
        weights: str | None = None,
        text_weight: float = ITM_TEXT_WEIGHT,
        scale: float | None = ITM_SCALE,
        space=None,
    ):
        from mining.itm.model import ItmSpace

        super().__init__(domains, space or ItmSpace(weights), text_weight, scale)


class ClipDomainClassifier(SpaceDomainClassifier):
    """Zero-shot open_clip: image and caption each matched to the domain prompts, averaged."""

    def __init__(self, domains: tuple[str, ...], model_name: str | None = None, pretrained: str | None = None,
                 model=None, preprocess=None, tokenizer=None):
        from mining.itm.model import ClipSpace

        space = ClipSpace(model_name, pretrained, model=model, preprocess=preprocess, tokenizer=tokenizer)
        super().__init__(domains, space, text_weight=0.5)
        self.backend = "open_clip"


def make_classifier(cfg):
    """The classifier a :class:`mining.config.MiningConfig` asks for.

    ``clip_model`` set: open_clip's space. Otherwise ``cfg.extra["domain_backend"]``:
    ``"imagenet"`` (default: the ImageNet-classifier map, 0.805 on the COCO test split against
    0.537 for the projection, see docs/mining.md) or ``"itm"`` (the offline image-text projection).
    """
    if cfg.clip_model:
        return ClipDomainClassifier(cfg.domains, cfg.clip_model, cfg.clip_pretrained)
    backend = (cfg.extra or {}).get("domain_backend", "imagenet")
    if backend == "imagenet":
        return OfflineDomainClassifier(cfg.domains)
    if backend != "itm":
        raise ValueError(f"unknown domain_backend {backend!r} (itm or imagenet)")
    return ItmDomainClassifier(cfg.domains, (cfg.extra or {}).get("itm_weights"))


def label(probs: np.ndarray, domains: tuple[str, ...]) -> list[tuple[str, str, float]]:
    """Per row: (best domain, JSON of rounded probabilities, best probability)."""
    out = []
    for row in probs:
        j = int(np.argmax(row))
        scores = {d: round(float(p), 4) for d, p in zip(domains, row)}
        out.append((domains[j], json.dumps(scores, sort_keys=True), float(row[j])))
    return out
