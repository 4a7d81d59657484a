"""Reader and writer for the capsearch weight file format (see models/FORMAT.md)."""
import struct

MAGIC = b"CSWEIGHT"
VERSION = 1
ALIGN = 64
DTYPES = {"float32": (0, 4), "float16": (1, 2), "int32": (2, 4), "uint8": (3, 1)}
DTYPE_NAMES = {code: name for name, (code, _) in DTYPES.items()}


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write(path, tensors):
    """tensors: list of (name, dtype_name, dims, raw_bytes) in the order to store them."""
    entries = []
    dir_size = 0
    for name, dtype, dims, raw in tensors:
        code, width = DTYPES[dtype]
        count = 1
        for d in dims:
            count *= d
        if count * width != len(raw):
            raise ValueError(f"{name}: {len(raw)} bytes for dims {dims} of {dtype}")
        encoded = name.encode("utf-8")
        entries.append((encoded, code, dims, raw))
        dir_size += 2 + len(encoded) + 2 + 4 * len(dims) + 16
    offset = _align(24 + dir_size)
    data_offset = offset
    placed = []
    for encoded, code, dims, raw in entries:
        placed.append(offset)
        offset = _align(offset + len(raw))
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<IIQ", VERSION, len(entries), data_offset))
        for (encoded, code, dims, raw), at in zip(entries, placed):
            f.write(struct.pack("<H", len(encoded)) + encoded)
            f.write(struct.pack("<BB", code, len(dims)))
            f.write(struct.pack(f"<{len(dims)}I", *dims))
            f.write(struct.pack("<QQ", at, len(raw)))
        for (encoded, code, dims, raw), at in zip(entries, placed):
            f.write(b"\0" * (at - f.tell()))
            f.write(raw)


def read(path):
    """Returns {name: (dtype_name, dims, raw_bytes)}."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != MAGIC:
        raise ValueError(f"{path}: not a capsearch weight file")
    version, count, data_offset = struct.unpack_from("<IIQ", blob, 8)
    if version != VERSION:
        raise ValueError(f"{path}: format version {version}, expected {VERSION}")
    pos = 24
    out = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", blob, pos)
        name = blob[pos + 2 : pos + 2 + length].decode("utf-8")
        pos += 2 + length
        code, rank = struct.unpack_from("<BB", blob, pos)
        pos += 2
        dims = list(struct.unpack_from(f"<{rank}I", blob, pos))
        pos += 4 * rank
        at, nbytes = struct.unpack_from("<QQ", blob, pos)
        pos += 16
        out[name] = (DTYPE_NAMES[code], dims, blob[at : at + nbytes])
    return out
