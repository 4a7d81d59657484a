"""Reader of the feature files written by models/tools/extract_features (our C CNN)."""
import numpy as np

POOLED, MID, CLASSES, MAX_DET = 1280, 576, 91, 100
# The concept head's input, the layout of caption_head_features() in engine/caption.c.
FEAT_DIM = POOLED + MID + 2 * CLASSES

_DET = np.dtype([("class_id", "<i4"), ("score", "<f4"), ("box", "<f4", 4)])
_REC = np.dtype([("name", "S128"), ("ok", "<u4"), ("pooled", "<f4", POOLED),
                 ("conv1_max", "<f4", POOLED), ("mid", "<f4", MID), ("class_max", "<f4", CLASSES),
                 ("n_det", "<u4"), ("det", _DET, MAX_DET)])


def read(path):
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:8] != b"CAPFEAT1":
            raise ValueError(f"{path}: not a feature file")
        count = int(np.frombuffer(head[8:12], "<u4")[0])
        size = int(np.frombuffer(head[12:16], "<u4")[0])
        if size != _REC.itemsize:
            raise ValueError(f"{path}: record size {size}, expected {_REC.itemsize}")
        return np.frombuffer(f.read(count * size), _REC, count)


def head_features(recs):
    """(N, FEAT_DIM) float32: pooled, mid, class_max, log(1 + confident boxes per class)."""
    n = len(recs)
    counts = np.zeros((n, CLASSES), np.float32)
    for i, r in enumerate(recs):
        d = r["det"][: r["n_det"]]
        d = d[(d["score"] >= 0.5) & (d["class_id"] > 0) & (d["class_id"] < CLASSES)]
        np.add.at(counts[i], d["class_id"], 1.0)
    return np.concatenate([recs["pooled"], recs["mid"], recs["class_max"],
                           np.log1p(counts)], axis=1).astype(np.float32)
