"""Text handling shared by every training and evaluation script.

One tokeniser (lowercase, PTB-like: "dog's" -> "dog 's", punctuation dropped) so that the
decoder vocabulary, the concept labels and the metrics see the same words, and one
word -> concept mapping (plurals, synonyms) that is exported into captioner.csw so the
C text side maps queries exactly like training mapped captions.
"""
import csv
import json
import os
import re
import zlib

DATA = os.environ.get("CAPSEARCH_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))

_TOKEN = re.compile(r"n't|'s|[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text):
    """Lowercase PTB-style tokens without punctuation (what the COCO toolkit scores)."""
    s = text.lower()
    s = re.sub(r"n't\b", " n't", s)
    s = re.sub(r"'s\b", " 's", s)
    return _TOKEN.findall(s)


# Words that carry no visual content: never concepts.
STOPWORDS = set("""
a an the of on in with and is are at to his her their its it this that these those some
there while for by from as be being been has have had other each into onto near next top
up down out over under one 's n't who what which where when whose how why he she they
them him we you i me my our your was were will can could would should do does did doing
not no but or if so than then very also just too all any both few more most much many
such only own same here off again once about above below between through during before
after against along across around behind beside besides toward towards upon within without
side front back inside outside together another something someone other others while
very lot lots kind sort part way thing things it's
""".split())

# Irregular plurals and synonyms: word -> concept word. Regular plurals are handled by rule.
SYNONYMS = {
    "men": "man", "women": "woman", "children": "child", "kids": "child", "kid": "child",
    "guy": "man", "guys": "man", "gentleman": "man", "gentlemen": "man",
    "lady": "woman", "ladies": "woman", "persons": "person",
    "puppy": "dog", "puppies": "dog", "pup": "dog", "pups": "dog", "doggy": "dog",
    "kitten": "cat", "kittens": "cat", "kitty": "cat",
    "bike": "bicycle", "bikes": "bicycle", "cycle": "bicycle",
    "motorbike": "motorcycle", "motorbikes": "motorcycle",
    "aeroplane": "airplane", "plane": "airplane", "planes": "airplane", "jet": "airplane",
    "jets": "airplane", "airliner": "airplane",
    "tv": "television", "tvs": "television",
    "sofa": "couch", "sofas": "couch",
    "automobile": "car", "automobiles": "car",
    "doughnut": "donut", "doughnuts": "donut",
    "cellphone": "phone", "cellphones": "phone", "smartphone": "phone",
    "teddy": "teddy", "hotdog": "hot", "hotdogs": "hot",
    "ocean": "ocean", "sea": "ocean", "surf": "wave",
    "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose",
    "sheep": "sheep", "skis": "ski", "skiing": "skiing",
    "wii": "wii", "hydrants": "hydrant", "racquet": "racket", "racquets": "racket",
    "photo": "picture", "photograph": "picture", "image": "picture",
    "grassy": "grass", "snowy": "snow", "sandy": "sand", "rocky": "rock", "wooded": "wood",
    "cloudy": "cloud", "clouds": "cloud", "grey": "gray",
}

# COCO's 80 detector classes, as the backbone labels them; their words are always concepts.
COCO_LABELS = """person bicycle car motorcycle airplane bus train truck boat traffic_light
fire_hydrant stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra
giraffe backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite
baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork
knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair
couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone
microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier
toothbrush""".split()

# COCO id -> detector label (engine/postprocess.c); '' for the unused ids.
COCO_LABELS_BY_ID = [''] * 91
for _i, _l in [(1, 'person'), (2, 'bicycle'), (3, 'car'), (4, 'motorcycle'), (5, 'airplane'), (6, 'bus'), (7, 'train'), (8, 'truck'), (9, 'boat'), (10, 'traffic light'), (11, 'fire hydrant'), (13, 'stop sign'), (14, 'parking meter'), (15, 'bench'), (16, 'bird'), (17, 'cat'), (18, 'dog'), (19, 'horse'), (20, 'sheep'), (21, 'cow'), (22, 'elephant'), (23, 'bear'), (24, 'zebra'), (25, 'giraffe'), (27, 'backpack'), (28, 'umbrella'), (31, 'handbag'), (32, 'tie'), (33, 'suitcase'), (34, 'frisbee'), (35, 'skis'), (36, 'snowboard'), (37, 'sports ball'), (38, 'kite'), (39, 'baseball bat'), (40, 'baseball glove'), (41, 'skateboard'), (42, 'surfboard'), (43, 'tennis racket'), (44, 'bottle'), (46, 'wine glass'), (47, 'cup'), (48, 'fork'), (49, 'knife'), (50, 'spoon'), (51, 'bowl'), (52, 'banana'), (53, 'apple'), (54, 'sandwich'), (55, 'orange'), (56, 'broccoli'), (57, 'carrot'), (58, 'hot dog'), (59, 'pizza'), (60, 'donut'), (61, 'cake'), (62, 'chair'), (63, 'couch'), (64, 'potted plant'), (65, 'bed'), (67, 'dining table'), (70, 'toilet'), (72, 'tv'), (73, 'laptop'), (74, 'mouse'), (75, 'remote'), (76, 'keyboard'), (77, 'cell phone'), (78, 'microwave'), (79, 'oven'), (80, 'toaster'), (81, 'sink'), (82, 'refrigerator'), (84, 'book'), (85, 'clock'), (86, 'vase'), (87, 'scissors'), (88, 'teddy bear'), (89, 'hair drier'), (90, 'toothbrush')]:
    COCO_LABELS_BY_ID[_i] = _l


def label_words(label):
    """Concept words that a COCO label stands for ("cell phone" -> phone, cell)."""
    return [w for w in re.split(r"[ _]", label.lower()) if w and w not in STOPWORDS]


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        for row in reader:
            if len(row) >= len(header):
                yield dict(zip(header, row))


def text_corpus():
    """Caption text for the language model: {image key: [caption, ...]}. Never coco_mini."""
    groups = {}
    sources = [
        ("flickr8k/captions.tsv", "image", "f8k"),
        ("coco/val2017_captions.tsv", "coco_image_id", "coco"),
        ("coco/karpathy_test_captions.tsv", "coco_image_id", "coco"),
        ("flickr30k/testval_captions.tsv", "image", "f30k"),
    ]
    for rel, key, tag in sources:
        for row in read_tsv(os.path.join(DATA, "text", rel)):
            groups.setdefault(f"{tag}:{row[key]}", []).append(row["caption"])
    return groups


def work_concept_map(work):
    """The ConceptMap of a training work folder's vocab.json (build_vocab.py, from_csw.py)."""
    with open(os.path.join(work, "vocab.json")) as f:
        vocab = json.load(f)
    return ConceptMap(vocab["concepts"], vocab["words"][3:])


class ConceptMap:
    """word -> concept index, the mapping used for captions, Q&A text and queries."""

    def __init__(self, concepts, vocab_words):
        self.concepts = list(concepts)
        self.index = {w: i for i, w in enumerate(self.concepts)}
        self.alias = {}
        for w in vocab_words:
            c = self.lookup_word(w)
            if c is not None and self.concepts[c] != w:
                self.alias[w] = self.concepts[c]

    def lookup_word(self, w):
        if w in self.index:
            return self.index[w]
        if w in SYNONYMS and SYNONYMS[w] in self.index:
            return self.index[SYNONYMS[w]]
        for stem in singulars(w):
            if stem in self.index:
                return self.index[stem]
            if stem in SYNONYMS and SYNONYMS[stem] in self.index:
                return self.index[SYNONYMS[stem]]
        return None

    def indices(self, tokens):
        out = set()
        for t in tokens:
            c = self.lookup_word(t)
            if c is not None:
                out.add(c)
        return out


def singulars(w):
    """Candidate singular forms, most likely first (the C side applies the same rules)."""
    out = []
    if len(w) > 4 and w.endswith("ies"):
        out.append(w[:-3] + "y")
    if len(w) > 3 and w.endswith("es"):
        out.append(w[:-2])
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        out.append(w[:-1])
    return out


# Visual7W files that are the same photo (../shared/data/README.md): one group each.
V7W_SAME_PHOTO = {"v7w_2317316.jpg": "v7w_713494.jpg", "v7w_2355274.jpg": "v7w_1592809.jpg"}


def v7w_excluded():
    """The Visual7W photos that are copies of validation photos (visual7w/exclude.tsv):
    left out of every training step."""
    path = os.path.join(DATA, "images/visual7w/exclude.tsv")
    return {row["image"] for row in read_tsv(path)} if os.path.isfile(path) else set()


def v7w_split(name):
    """The one split of the Visual7W photos, by image (never by question: the QA files
    split by question and 2,141 photos appear in several of them):
      'exclude'  copies of validation photos, never used;
      'dev'      half of the photos with five COCO captions (visual7w/coco_captions.tsv):
                 never trained on, the set on which settings are chosen (eval: v7w_dev);
      'cal'      the other half: never trained on by the concept head; its full caption
                 labels fit the calibration and measure the head;
      'val'      a tenth of the rest: held out from the head's training (Q&A labels);
      'train'    the rest.
    Photos that are the same picture (V7W_SAME_PHOTO) share one split."""
    global _V7W_CAPTIONED, _V7W_EXCLUDED
    if _V7W_CAPTIONED is None:
        path = os.path.join(DATA, "images/visual7w/coco_captions.tsv")
        caps = {row["image"] for row in read_tsv(path)} if os.path.isfile(path) else set()
        _V7W_CAPTIONED = {V7W_SAME_PHOTO.get(n, n) for n in caps}
        _V7W_EXCLUDED = {V7W_SAME_PHOTO.get(n, n) for n in v7w_excluded()}
    key = V7W_SAME_PHOTO.get(name, name)
    if key in _V7W_EXCLUDED:
        return "exclude"
    h = zlib.crc32(key.encode("utf-8"))
    if key in _V7W_CAPTIONED:
        return "dev" if h % 2 == 0 else "cal"
    return "val" if h % 10 == 0 else "train"


_V7W_CAPTIONED = _V7W_EXCLUDED = None
