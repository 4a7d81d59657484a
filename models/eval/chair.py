"""Object hallucination after CHAIR (Rohrbach et al., "Object Hallucination in Image
Captioning", EMNLP 2018), judged against the human references only (we have no
segmentation masks): an object of a caption is hallucinated when none of the image's
references names the same COCO class.

Object words = the 80 COCO classes plus a synonym table (person <- man, woman, boy, girl,
child, people, surfer, ...; dog <- puppy; bicycle <- bike; ...), after Rohrbach et al.'s
lists, with two-word names ("hot dog", "teddy bear", "dirt bike") matched first so that
"hot dog" is food and not a dog. Plurals by rule. A few colour/food clashes are handled by
context ("orange shirt" is a colour, "oranges" fruit; "glasses" are not a wine glass).

CHAIR_s = captions with >= 1 hallucinated object / captions;
CHAIR_i = hallucinated objects / object mentions (each class counted once per caption).
The human ceiling scores each reference against the other four references of its image.
"""

# class -> words (singular; regular plurals are found by rule)
CLASS_WORDS = {
    "person": """person people man woman boy girl child kid baby toddler guy lady gentleman
        player skier surfer skateboarder snowboarder rider biker cyclist bicyclist
        motorcyclist swimmer climber runner dancer crowd family adult teenager teen
        youngster worker officer policeman soldier male female tourist hiker athlete
        pedestrian spectator audience mother father mom dad son daughter brother sister
        friend infant student skater boarder jockey cowboy batter catcher pitcher umpire
        chef cook groom bride wrestler fighter performer musician singer drummer
        guitarist clown team""",
    "bicycle": "bicycle bike cycle",
    "car": "car automobile taxi cab sedan van jeep suv",
    "motorcycle": "motorcycle motorbike scooter moped",
    "airplane": "airplane plane jet aircraft airliner aeroplane",
    "bus": "bus",
    "train": "train locomotive",
    "truck": "truck pickup",
    "boat": "boat ship kayak canoe sailboat yacht raft ferry",
    "traffic light": "",
    "fire hydrant": "hydrant",
    "stop sign": "",
    "parking meter": "",
    "bench": "bench",
    "bird": "bird duck goose pigeon seagull gull eagle parrot swan chicken hen owl hawk",
    "cat": "cat kitten kitty",
    "dog": "dog puppy pup doggy",
    "horse": "horse pony",
    "sheep": "sheep lamb ram",
    "cow": "cow cattle bull calf ox",
    "elephant": "elephant",
    "bear": "bear",
    "zebra": "zebra",
    "giraffe": "giraffe",
    "backpack": "backpack",
    "umbrella": "umbrella parasol",
    "handbag": "handbag purse",
    "tie": "tie necktie",
    "suitcase": "suitcase luggage",
    "frisbee": "frisbee",
    "skis": "ski skis",
    "snowboard": "snowboard",
    "sports ball": "ball football soccerball basketball volleyball",
    "kite": "kite",
    "baseball bat": "",
    "baseball glove": "mitt",
    "skateboard": "skateboard",
    "surfboard": "surfboard",
    "tennis racket": "racket racquet",
    "bottle": "bottle",
    "wine glass": "wineglass",
    "cup": "cup mug",
    "fork": "fork",
    "knife": "knife",
    "spoon": "spoon",
    "bowl": "bowl",
    "banana": "banana",
    "apple": "apple",
    "sandwich": "sandwich burger hamburger",
    "orange": "",
    "broccoli": "broccoli",
    "carrot": "carrot",
    "hot dog": "hotdog",
    "pizza": "pizza",
    "donut": "donut doughnut",
    "cake": "cake cupcake",
    "chair": "chair",
    "couch": "couch sofa",
    "potted plant": "houseplant",
    "bed": "bed",
    "dining table": "table",
    "toilet": "toilet",
    "tv": "tv television",
    "laptop": "laptop",
    "mouse": "mouse",
    "remote": "remote",
    "keyboard": "keyboard",
    "cell phone": "phone cellphone smartphone",
    "microwave": "microwave",
    "oven": "oven stove",
    "toaster": "toaster",
    "sink": "sink",
    "refrigerator": "refrigerator fridge",
    "book": "book",
    "clock": "clock",
    "vase": "vase",
    "scissors": "scissors",
    "teddy bear": "",
    "hair drier": "hairdryer",
    "toothbrush": "toothbrush",
}

# two-word names, matched before single words (their words are then consumed)
BIGRAMS = {
    ("traffic", "light"): "traffic light", ("fire", "hydrant"): "fire hydrant",
    ("stop", "sign"): "stop sign", ("parking", "meter"): "parking meter",
    ("baseball", "bat"): "baseball bat", ("baseball", "glove"): "baseball glove",
    ("tennis", "racket"): "tennis racket", ("wine", "glass"): "wine glass",
    ("hot", "dog"): "hot dog", ("potted", "plant"): "potted plant",
    ("dining", "table"): "dining table", ("cell", "phone"): "cell phone",
    ("mobile", "phone"): "cell phone", ("teddy", "bear"): "teddy bear",
    ("hair", "drier"): "hair drier", ("hair", "dryer"): "hair drier",
    ("dirt", "bike"): "motorcycle", ("motor", "bike"): "motorcycle",
    ("sports", "ball"): "sports ball", ("soccer", "ball"): "sports ball",
    ("tennis", "ball"): "sports ball", ("stuffed", "animal"): "teddy bear",
    ("tooth", "brush"): "toothbrush",
    ("surf", "board"): "surfboard", ("skate", "board"): "skateboard",
    ("snow", "board"): "snowboard",
}
IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "people",
             "geese": "goose", "mice": "mouse", "knives": "knife", "feet": "foot",
             "babies": "baby", "ponies": "pony", "puppies": "puppy", "skis": "skis",
             "buses": "bus", "benches": "bench", "sandwiches": "sandwich",
             "couches": "couch", "boxes": "box", "kitties": "kitty", "ladies": "lady",
             "families": "family", "cattle": "cattle", "sheep": "sheep", "scissors": "scissors",
             "calves": "calf", "oxen": "ox", "teeth": "tooth", "glasses": "glasses"}

WORD_CLASS = {}
for _cls, _words in CLASS_WORDS.items():
    for _w in _words.split():
        WORD_CLASS[_w] = _cls
    if " " not in _cls:
        WORD_CLASS.setdefault(_cls, _cls)


def _singular(w):
    if w in IRREGULAR:
        return IRREGULAR[w]
    if w in WORD_CLASS:
        return w
    if len(w) > 4 and w.endswith("ies") and w[:-3] + "y" in WORD_CLASS:
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[:-2] in WORD_CLASS:
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss") and w[:-1] in WORD_CLASS:
        return w[:-1]
    return w


def objects(tokens):
    """COCO classes an already-tokenised caption names (a set)."""
    found = set()
    i = 0
    n = len(tokens)
    while i < n:
        w = tokens[i]
        if i + 1 < n:
            pair = (w, _singular(tokens[i + 1]))
            if pair in BIGRAMS:
                found.add(BIGRAMS[pair])
                i += 2
                continue
        if w in ("orange", "oranges"):
            # the fruit only as "oranges", "orange slices" or at the end; else a colour
            nxt = tokens[i + 1] if i + 1 < n else None
            if w == "oranges" or nxt is None or nxt in ("slice", "slices", "juice", "and", "fruit"):
                found.add("orange")
            i += 1
            continue
        s = _singular(w)
        if s in WORD_CLASS:
            found.add(WORD_CLASS[s])
        i += 1
    return found


def _score(pairs):
    """pairs: [(caption objects, reference objects)] -> (CHAIR_s, CHAIR_i, n, mentions)."""
    bad_caps = mentions = bad = 0
    for cap, ref in pairs:
        h = cap - ref
        mentions += len(cap)
        bad += len(h)
        bad_caps += bool(h)
    n = len(pairs)
    return (bad_caps / n if n else 0.0, bad / mentions if mentions else 0.0, n, mentions)


def chair(hyps, refs):
    """hyps {id: tokens}, refs {id: [tokens, ...]} -> dict with chair_s, chair_i and the
    hallucinated classes by count."""
    pairs = []
    counts = {}
    for k in hyps:
        ref = set().union(*(objects(r) for r in refs[k])) if refs[k] else set()
        cap = objects(hyps[k])
        pairs.append((cap, ref))
        for c in cap - ref:
            counts[c] = counts.get(c, 0) + 1
    s, i, n, m = _score(pairs)
    return {"chair_s": s, "chair_i": i, "captions": n, "mentions": m,
            "hallucinated": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def human_ceiling(refs):
    """Each reference against the other references of its image, averaged over the
    leave-one-out passes: (CHAIR_s, CHAIR_i)."""
    pairs = []
    for k, rs in refs.items():
        objs = [objects(r) for r in rs]
        for j in range(len(rs)):
            others = set().union(*(o for t, o in enumerate(objs) if t != j)) if len(rs) > 1 else set()
            pairs.append((objs[j], others))
    s, i, _, _ = _score(pairs)
    return s, i
