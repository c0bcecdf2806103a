"""Domain-typical subject names and web-like captions, varied per view."""

from __future__ import annotations

import numpy as np

from mining.demo_corpus.draw import Subject

NOUNS = {
    "art": ["sculpture", "figure", "emblem", "mandala", "totem", "mask", "vessel", "idol", "relief",
            "ornament", "medallion", "icon"],
    "products": ["vase", "bottle", "mug", "lamp", "speaker", "clock", "backpack", "kettle", "candle",
                 "perfume flask", "jar", "cushion"],
    "animals": ["cat", "fox", "dog", "turtle", "rabbit", "lizard", "lamb", "pony", "frog", "bear cub",
                "goat", "piglet"],
    "scenery": ["tree", "lighthouse", "tower", "windmill", "beacon", "monument", "obelisk", "pagoda",
                "balloon", "flag tower", "totem pole", "water tower"],
    "food": ["cake", "pie", "donut", "omelette", "pizza", "tart", "pancake", "pudding", "cookie",
             "cheesecake", "quiche", "flatbread"],
    "vehicles": ["car", "van", "buggy", "truck", "jeep", "camper", "coupe", "minibus", "hatchback",
                 "pickup", "roadster", "wagon"],
}
PATTERN_WORDS = {"stripes": "striped", "checker": "checkered", "dots": "polka-dot", "waves": "wavy",
                 "rings": "ringed", "zigzag": "zigzag", "grid": "grid-patterned", "blobs": "spotted",
                 "spiral": "swirly", "triangles": "triangle-print", "plaid": "plaid", "speckle": "speckled",
                 "bricks": "brick-patterned", "solid": "plain", "leopard": "leopard-print"}

TEMPLATES = {
    "art": [
        "a watercolor painting of a {name}",
        "an oil painting of a {name} {bg}",
        "{Name}, acrylic on {surface}",
        "abstract artwork featuring a {name}",
        "a gouache study of a {name}, {mood} tones",
        "painting: the {name} ({year})",
        "impressionist painting of a {name}",
        "a {name} painted with thick brush strokes",
    ],
    "products": [
        "product photo of a {name} on a white table",
        "{Name} - studio shot",
        "buy the new {name} online, free shipping",
        "a {name} {bg}, isolated",
        "catalog image: {name}, {mood} edition",
        "{Name} | best seller {year}",
        "close-up product shot of a {name}",
        "the {name} in our {mood} collection",
    ],
    "animals": [
        "a {name} animal in the grass",
        "photo of a {name} {bg}",
        "cute {name} looking around",
        "wildlife shot: a {name} {bg}",
        "my {name} playing outside",
        "a {name} standing {bg}",
        "a curious {name} on a {mood} day",
        "{Name} spotted in {year}",
    ],
    "scenery": [
        "a {name} in the landscape",
        "landscape with a {name} {bg}",
        "view of the {name} from the hills",
        "the old {name} at {time}",
        "scenic {name}, {mood} afternoon",
        "travel photo: {name} {bg}",
        "a lonely {name} on the horizon",
        "panorama of the {name} ({year})",
    ],
    "food": [
        "a plate of {name}",
        "homemade {name} {bg}",
        "delicious {name}, close-up",
        "recipe: easy {name} in 30 minutes",
        "fresh {name} served {bg}",
        "{Name} for a {mood} brunch",
        "my grandmother's {name}",
        "food photography: {name}",
    ],
    "vehicles": [
        "a {name} parked on the street",
        "{Name} driving {bg}",
        "side view of a {name}",
        "vintage {name} for sale",
        "a {mood} {name} on a road trip",
        "the {name}, model year {year}",
        "a {name} vehicle {bg}",
        "spotted this {name} downtown",
    ],
}
MOODS = ["bright", "warm", "cool", "sunny", "calm", "bold", "soft", "classic"]
SURFACES = ["canvas", "paper", "wood panel", "board"]
TIMES = ["dawn", "noon", "sunset", "dusk"]


def subject_name(s: Subject) -> str:
    """'<colour> <pattern> <noun> with <accent> details', distinct across a domain's groups by noun index."""
    nouns = NOUNS[s.domain]
    noun = nouns[s.noun_index % len(nouns)]
    return f"{s.colours[0]} {PATTERN_WORDS[s.pattern]} {noun} with {s.colours[2]} details"


def caption_for(r: np.random.Generator, s: Subject, bg_phrase: str) -> str:
    """A caption for one view: a domain template filled with the name and view details."""
    t = TEMPLATES[s.domain][int(r.integers(len(TEMPLATES[s.domain])))]
    name = subject_name(s)
    return t.format(
        name=name, Name=name[0].upper() + name[1:], bg=bg_phrase, mood=MOODS[int(r.integers(len(MOODS)))],
        surface=SURFACES[int(r.integers(len(SURFACES)))], time=TIMES[int(r.integers(len(TIMES)))],
        year=int(r.integers(1990, 2024)),
    )


def recaption(r: np.random.Generator, s: Subject, bg_phrase: str) -> str:
    """A second caption for a same-URL repeat (the page around the image changed)."""
    return caption_for(r, s, bg_phrase) + ["", " - photo", " | image", " (repost)"][int(r.integers(4))]
