"""Read a PyTorch state dict (``torch.save`` of a dict of tensors) into numpy arrays, without torch and without
running code from the file.

Both of ``torch.save``'s formats are read:

- the zip format (torch >= 1.6): ``<root>/data.pkl`` pickles the dict, each storage is the member
  ``<root>/data/<key>``, and ``<root>/byteorder`` (when present) says its byte order;
- the legacy format: five things one after another in the file: a pickled magic number, a pickled protocol
  version, a pickled ``sys_info`` dict (byte order, type sizes), the pickled dict, the pickled list of storage
  keys, then each storage in that order as an int64 element count and the raw elements.

Tensors reach the pickle as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and storages
as persistent ids. The unpickler below resolves only the globals a state dict needs (the rebuild functions, the
storage types, ``collections.OrderedDict``) to harmless stand-ins, and refuses any other global with an
:class:`OmnifuseError` before anything from the file is called. Nothing is imported from the file's module names.

Example::

    from omnifuse.weights import locate
    from omnifuse.weights.pth import load_state_dict

    tensors = load_state_dict(locate("efficientnet_lite0"))  # {"_conv_stem.weight": array(32, 3, 3, 3), ...}
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from omnifuse.errors import OmnifuseError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch's storage classes -> the numpy dtype of their elements (as torch.save names them)
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
# bfloat16 has no numpy dtype: its elements are read as the upper halves of float32s
_BFLOAT16 = "BFloat16Storage"


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass
class _Storage:
    """A storage named in the pickle; its elements are filled in once read (the legacy format stores them after)."""

    key: str
    kind: str  # a key of _STORAGE_DTYPES, or _BFLOAT16
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"expected a storage, got {type(storage).__name__}")
    return _TensorRef(
        storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data, *_ignored):
    # requires_grad and backward hooks mean nothing to a numpy array; the hooks dict is an empty OrderedDict
    return data


# (module, name) -> what the unpickler gives for that global; nothing else is resolvable
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in [*_STORAGE_DTYPES, _BFLOAT16]},
}


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ``_ALLOWED`` (to stand-ins) and maps storages to ``_Storage``."""

    def __init__(self, file, source: str, storages: dict[str, _Storage], zip_format: bool):
        super().__init__(file)
        self.source = source
        self.storages = storages
        self.zip_format = zip_format

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise OmnifuseError(
                f"Expected a PyTorch state dict of tensors in {self.source!r}. Received: a pickle that refers to "
                f"the global {module}.{name}, which is not part of a state dict (refused; nothing in the file ran)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise OmnifuseError(
                f"Expected storage references ('storage', type, key, location, size) in {self.source!r}. "
                f"Received: {str(pid)[:80]}"
            )
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(kind, _StorageType) or not isinstance(numel, int):
            raise OmnifuseError(
                f"Expected a storage type and an element count in {self.source!r}'s storage {key!r}. "
                f"Received: {kind!r}, {numel!r}"
            )
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, kind.name, numel)
        if not self.zip_format and len(pid) > 5 and pid[5] is not None:
            # storage views: written only by torch < 1.0, whose files this reader does not cover
            raise OmnifuseError(
                f"Expected whole storages in {self.source!r}. Received: storage {key!r} as a view {pid[5]!r} "
                "(a file from torch < 1.0: load and save it again with a recent torch)"
            )
        return storage


def _elements(kind: str, raw: bytes | memoryview, little: bool, what: str) -> np.ndarray:
    order = "<" if little else ">"
    if kind == _BFLOAT16:
        halves = np.frombuffer(raw, dtype=np.dtype(order + "u2")).astype(np.uint32)
        return (halves << 16).view(np.float32)
    dtype = np.dtype(_STORAGE_DTYPES[kind]).newbyteorder(order)
    if len(raw) % dtype.itemsize:
        raise OmnifuseError(
            f"Expected {what} to hold whole {dtype.name} elements. Received: {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _itemsize(kind: str) -> int:
    return 2 if kind == _BFLOAT16 else np.dtype(_STORAGE_DTYPES[kind]).itemsize


def _materialise(obj, source: str, name: str = ""):
    """Replace every ``_TensorRef`` in ``obj`` (nested dicts, lists, tuples) by its numpy array."""
    if isinstance(obj, _TensorRef):
        return _tensor(obj, source, name)
    if isinstance(obj, dict):
        return {k: _materialise(v, source, f"{name}.{k}" if name else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, source, f"{name}[{i}]") for i, v in enumerate(obj))
    return obj


def _tensor(ref: _TensorRef, source: str, name: str) -> np.ndarray:
    storage = ref.storage
    data = storage.data
    if data is None:
        raise OmnifuseError(f"Expected the elements of storage {storage.key!r} in {source!r}. Received: none")
    if len(ref.size) != len(ref.stride) or any(s < 0 for s in (*ref.size, *ref.stride)) or ref.offset < 0:
        raise OmnifuseError(
            f"Expected a non-negative size and stride of the same length for {name!r} in {source!r}. "
            f"Received: size {ref.size}, stride {ref.stride}, offset {ref.offset}"
        )
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=data.dtype)
    numel = int(np.prod(ref.size, dtype=np.float64))
    if numel > 16 * data.size + 4096:  # stride-0 dimensions could otherwise ask for any amount of memory
        raise OmnifuseError(
            f"Expected tensor {name!r} in {source!r} to have about as many elements as its storage "
            f"({data.size}). Received: size {ref.size} ({numel} elements)"
        )
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= data.size:
        raise OmnifuseError(
            f"Expected tensor {name!r} in {source!r} to lie inside its storage of {data.size} elements. "
            f"Received: size {ref.size}, stride {ref.stride}, offset {ref.offset} (reaches element {last})"
        )
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :], shape=ref.size, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.array(view)  # a contiguous copy: the arrays share no memory with each other


def _load_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or [
            n for n in names if n == "data.pkl"
        ]
        if len(pickles) != 1:
            raise OmnifuseError(
                f"Expected one <root>/data.pkl in the PyTorch zip file {path!r}. Received: {len(pickles)}"
            )
        root = pickles[0][: -len("data.pkl")]
        little = True
        if root + "byteorder" in names:
            little = archive.read(root + "byteorder").strip() != b"big"
        storages: dict[str, _Storage] = {}
        unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), path, storages, True)
        obj = unpickler.load()
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            if member not in names:
                raise OmnifuseError(f"Expected the member {member!r} in {path!r}. Received: no such member")
            raw = archive.read(member)
            storage.data = _elements(storage.kind, raw, little, f"{path!r}'s {member!r}")
            _check_numel(storage, path)
    return obj


def _check_numel(storage: _Storage, path: str) -> None:
    if storage.data.size < storage.numel:
        raise OmnifuseError(
            f"Expected storage {storage.key!r} in {path!r} to hold {storage.numel} elements. "
            f"Received: {storage.data.size}"
        )


def _load_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        raw = f.read()
    stream = io.BytesIO(raw)

    def header(what):
        try:
            return _StateDictUnpickler(stream, path, {}, False).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            if isinstance(err, OmnifuseError):
                raise
            raise OmnifuseError(
                f"Expected a PyTorch file (torch.save) at {path!r}. Received: no readable {what} ({err})"
            ) from None

    magic = header("magic number")
    if magic != _LEGACY_MAGIC:
        raise OmnifuseError(
            f"Expected a PyTorch file (torch.save) at {path!r}. Received: a file starting with {str(magic)[:40]!r}"
        )
    version = header("protocol version")
    if version != 1001:
        raise OmnifuseError(f"Expected PyTorch legacy protocol 1001 in {path!r}. Received: {version!r}")
    sys_info = header("sys_info")
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages: dict[str, _Storage] = {}
    obj = _StateDictUnpickler(stream, path, storages, False).load()
    keys = _StateDictUnpickler(stream, path, {}, False).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise OmnifuseError(
            f"Expected the storage key list of {path!r} to name the {len(storages)} storages of its tensors. "
            f"Received: {str(keys)[:80]}"
        )
    pos = stream.tell()
    for key in map(str, keys):
        storage = storages[key]
        if pos + 8 > len(raw):
            raise OmnifuseError(f"Expected storage {key!r} in {path!r}. Received: end of file (truncated?)")
        (numel,) = struct.unpack("<q" if little else ">q", raw[pos : pos + 8])
        nbytes = numel * _itemsize(storage.kind)
        pos += 8
        if numel != storage.numel or pos + nbytes > len(raw):
            raise OmnifuseError(
                f"Expected storage {key!r} in {path!r} to hold {storage.numel} elements. "
                f"Received: {numel} elements declared, {max(0, len(raw) - pos)} bytes left"
            )
        storage.data = _elements(
            storage.kind, memoryview(raw)[pos : pos + nbytes], little, f"storage {key!r}"
        )
        pos += nbytes
    return obj


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of the PyTorch state dict saved at ``path``, as ``{name: numpy array}`` (in the file's order).

    Refuses (:class:`OmnifuseError`) any pickle that refers to something other than tensors and plain containers.
    """
    path = os.fspath(path)
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except OSError as err:
        raise OmnifuseError(f"Expected a readable PyTorch file at {path!r}. Received: {err}") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as err:
        raise OmnifuseError(
            f"Expected a PyTorch state dict at {path!r}. Received: unreadable ({err})"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint: {"state_dict": ..., "epoch": ...}
    if not isinstance(obj, dict):
        raise OmnifuseError(f"Expected a dict of tensors in {path!r}. Received: {type(obj).__name__}")
    out = _materialise(obj, path)
    bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise OmnifuseError(
            f"Expected only tensors in {path!r}'s state dict. Received: non-tensor keys {bad[:5]}"
        )
    return out
