"""``torch.save`` files (zip format) read without torch.

Layout (torch >= 1.6): a zip whose entries share one root folder (its name varies: the file stem,
``archive``, ...): ``<root>/data.pkl`` (the pickled object, protocol 2), ``<root>/data/<key>`` (one raw
storage per key), ``<root>/byteorder`` (newer torch), ``<root>/version`` and friends.

Security: the pickle is untrusted. ``_SafeUnpickler.find_class`` resolves ONLY the names in
``_ALLOWED`` and maps each to our own harmless stand-in (tensor rebuild -> NumPy array, storage
classes -> dtype markers, ``argparse.Namespace`` -> an attribute-recording stub). Any other global is
refused before anything is built or called, with ``module.name`` in the message. ``_codecs.encode``
is allowed only as ``encode(str, 'latin1')`` because Python 3 pickles ``bytes`` that way at protocol 2
(torch's default), e.g. a bytes value in ``args``; ``set``/``frozenset``/``complex`` (as ``__builtin__``
or ``builtins``) because protocol 2 pickles them as calls on plain data. Nothing else from builtins.

Legacy files (torch < 1.6: a bare pickle stream, or the even older tar layout) are NOT loaded: their
storages are interleaved with pickle records, and supporting them would add a second parser for files
no reference script in the spec produces. They get an error saying how to re-save them.

bfloat16 tensors come back as float32 (exact widening; NumPy has no bfloat16).
"""
from __future__ import annotations

import collections
import io
import pickle
import re
import zipfile

import numpy as np

from ..errors import CheckpointError
from . import Checkpoint, split_top_level

# Raw pickle stream of a legacy torch.save: PROTO 2, LONG1 10 bytes = torch's magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,64}")
_MAX_PICKLE = 256 << 20
# torch stores entries uncompressed; a re-zipped file may deflate them, but a huge expansion ratio is
# a zip bomb: refuse compressed entries that expand past both limits.
_BOMB_MIN = 16 << 20
_BOMB_RATIO = 100

_MAX_EXPAND = 256 << 20

_BF16 = "bfloat16"


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class: only its element dtype matters."""
    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __call__(self, *a, **k):
        raise CheckpointError(f"pickle tries to call storage class torch.{self.name}")

    def __reduce__(self):
        raise TypeError("not picklable")


class _Storage:
    """One storage record: its raw bytes viewed as a 1-D array of the storage dtype."""
    __slots__ = ("key", "data", "bf16")

    def __init__(self, key, data, bf16):
        self.key, self.data, self.bf16 = key, data, bf16

    def __setstate__(self, state):
        raise CheckpointError("pickle tries to set state on a storage")


class NamespaceStub:
    """Replaces ``argparse.Namespace``: records attributes, runs no code of the saved class."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:   # (dict, slotstate) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError("argparse.Namespace state is not a dict of attribute names")
        self.__dict__.update(state)

    def to_dict(self, depth=0):
        return {k: _plainify(v, depth + 1) for k, v in self.__dict__.items()}


def _plainify(v, depth=0):
    """Namespace stubs -> dicts, recursively (args may nest Namespaces); depth-limited for hostile nesting."""
    if depth > 32:
        raise CheckpointError("args nest deeper than 32 levels")
    if isinstance(v, NamespaceStub):
        return v.to_dict(depth)
    if isinstance(v, dict):
        return {k: _plainify(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_plainify(x, depth + 1) for x in v)
    return v


def _int(x, what):
    if type(x) is not int:
        raise CheckpointError(f"{what} is a {type(x).__name__}, expected int")
    return x


def _rebuild(storage, offset, size, stride):
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor rebuild got a {type(storage).__name__} instead of a storage")
    offset = _int(offset, "tensor storage offset")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise CheckpointError("tensor rebuild: size/stride must be tuples of equal length")
    size = tuple(_int(s, "tensor size") for s in size)
    stride = tuple(_int(s, "tensor stride") for s in stride)
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"tensor rebuild: negative size/stride/offset ({size}, {stride}, {offset})")
    data = storage.data
    n_out = 1
    for n in size:
        n_out *= n
    # Views with stride 0 (expand) may be larger than their storage; cap that so a tiny file cannot
    # ask for terabytes. Real state dicts never hold large expanded views.
    if n_out > data.size and n_out * data.itemsize > _MAX_EXPAND:
        raise CheckpointError(f"tensor of size {list(size)} is a {n_out}-element view of a {data.size}-element "
                              f"storage {storage.key!r}; refusing to materialise it")
    if 0 in size:
        out = np.empty(size, dtype=data.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size:
            raise CheckpointError(f"storage {storage.key!r} holds {data.size} elements, a tensor of size "
                                  f"{list(size)} stride {list(stride)} offset {offset} needs {last + 1}")
        # a read-only view of the storage, never a copy: 2,000 tensors viewing one 1 MiB storage cost
        # 1 MiB, not 2 GiB (the folding code copies only the tensors it uses, in float64)
        out = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                              strides=[s * data.itemsize for s in stride], writeable=False)
    if storage.bf16:   # bf16 bits are the top half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    if out.dtype.byteorder not in "=|":
        out = out.astype(out.dtype.newbyteorder("="))
    if out.flags.writeable:  # the converted copies too: every loaded tensor is read-only alike
        out.flags.writeable = False
    return out


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _rebuild(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _rebuild(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"Parameter rebuild got a {type(data).__name__} instead of a tensor")
    return data


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("_codecs.encode is only allowed as encode(str, 'latin1') (pickled bytes)")
    return obj.encode("latin1")


def _complex(real=0.0, imag=0.0):
    if not all(type(x) in (int, float) for x in (real, imag)):
        raise CheckpointError("complex() is only allowed on two numbers")
    return complex(real, imag)


_STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": _BF16,
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16",
}
_DTYPES = {
    "float64": "f8", "double": "f8", "float32": "f4", "float": "f4", "float16": "f2", "half": "f2",
    "int64": "i8", "long": "i8", "int32": "i4", "int": "i4", "int16": "i2", "short": "i2",
    "int8": "i1", "uint8": "u1", "bool": "?", "complex64": "c8", "complex128": "c16",
}


def _allowed() -> dict:
    a = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "UntypedStorage"): _StorageType("UntypedStorage", "u1"),
        ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", "u1"),
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("argparse", "Namespace"): NamespaceStub,
        # Python 3 pickles sets/complex at protocol 2 as calls, under the Python 2 module name
        # '__builtin__' (fix_imports); 'builtins' when written without it. Pure data constructors.
        ("builtins", "set"): set, ("__builtin__", "set"): set,
        ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
        ("builtins", "complex"): _complex, ("__builtin__", "complex"): _complex,
        ("_codecs", "encode"): _codecs_encode,
        ("torch", "bfloat16"): "bfloat16",   # no NumPy bfloat16; a name is enough for metadata
    }
    for name, dt in _STORAGES.items():
        a[("torch", name)] = _StorageType(name, dt)
    for name, dt in _DTYPES.items():
        a[("torch", name)] = np.dtype(dt)
    return a


_ALLOWED = _allowed()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: str, zf: zipfile.ZipFile, root: str, big_endian: bool):
        super().__init__(io.BytesIO(data))
        self._path, self._zf, self._root, self._big = path, zf, root, big_endian
        self._raw: dict[str, bytes] = {}

    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise CheckpointError(
                f"{self._path}: refused to unpickle global {module}.{name}: evrt only loads tensors, storages "
                "and plain containers (a file that pickles whole modules or custom classes cannot be loaded "
                "without running its code; re-save it as torch.save({'model': model.state_dict()}, f))")
        return obj

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid   # location ('cpu', 'cuda:0') is irrelevant here
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"{self._path}: persistent id names no storage type ({stype!r:.60})")
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise CheckpointError(f"{self._path}: invalid storage key {key!r:.80} (must be a plain name)")
        numel = _int(numel, "storage element count")
        if numel < 0:
            raise CheckpointError(f"{self._path}: storage {key!r} has a negative size")
        bf16 = stype.dtype == _BF16
        dt = np.dtype("<u2" if bf16 else stype.dtype)
        if self._big:
            dt = dt.newbyteorder(">")
        nbytes = numel * dt.itemsize
        raw = self._raw.get(key)
        if raw is None:
            raw = self._raw[key] = self._read_record(key, nbytes)
        if len(raw) < nbytes:
            raise CheckpointError(f"{self._path}: storage {key!r} holds {len(raw)} bytes, "
                                  f"its {stype.name} of {numel} elements needs {nbytes}")
        data = np.frombuffer(raw, dtype=dt, count=numel)
        if dt.kind == "b":   # normalise odd bool bytes to 0/1
            data = np.frombuffer(raw, dtype="u1", count=numel) != 0
        return _Storage(key, data, bf16)

    def _read_record(self, key, nbytes):
        name = f"{self._root}/data/{key}"
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            if nbytes == 0:
                return b""
            raise CheckpointError(f"{self._path}: storage record {name!r} is missing from the archive") from None
        if info.file_size < nbytes:
            raise CheckpointError(f"{self._path}: storage {key!r} holds {info.file_size} bytes, "
                                  f"the pickle says {nbytes}")
        check_zip_bomb(self._path, info)
        with self._zf.open(info) as f:
            raw = f.read(nbytes)
        if len(raw) < nbytes:
            raise CheckpointError(f"{self._path}: storage {key!r} is truncated ({len(raw)} of {nbytes} bytes)")
        return raw


def check_zip_bomb(path, info: zipfile.ZipInfo):
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _BOMB_MIN \
            and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
        raise CheckpointError(f"{path}: entry {info.filename!r} claims to expand {info.compress_size} bytes "
                              f"to {info.file_size} (ratio > {_BOMB_RATIO}); refusing a possible zip bomb")


def _find_root(path, names) -> str:
    roots = [n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(roots) == 1:
        return roots[0]
    if not roots:
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise CheckpointError(f"{path}: this is a TorchScript archive (torch.jit.save), not a state-dict "
                                  "checkpoint; save model.state_dict() with torch.save instead")
        raise CheckpointError(f"{path}: zip archive without '<root>/data.pkl': not a torch.save checkpoint")
    raise CheckpointError(f"{path}: several '<root>/data.pkl' records ({', '.join(roots[:4])})")


def looks_like_torch_zip(path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/data.pkl") and n.count("/") == 1 for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return False


def _legacy_error(path, head: bytes):
    if head.startswith(_LEGACY_MAGIC):
        return CheckpointError(
            f"{path}: legacy torch.save format (torch < 1.6, a bare pickle stream). evrt reads only the zip "
            "format; re-save it with a current torch: torch.save(torch.load(f, weights_only=False), f2) "
            "(only for a file you trust)")
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}", b"c"):
        return CheckpointError(f"{path}: a raw pickle stream, not a torch.save zip archive; evrt never "
                               "unpickles those (re-save the state dict with a current torch.save)")
    if len(head) >= 262 and head[257:262] == b"ustar":
        return CheckpointError(f"{path}: legacy tar-format torch checkpoint (torch < 0.4); re-save it with a "
                               "current torch: torch.save(torch.load(f, weights_only=False), f2)")
    return CheckpointError(f"{path}: not a checkpoint evrt can read (expected a torch.save zip, "
                           ".safetensors or .npz)")


def load(path) -> Checkpoint:
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: {e.strerror or e}") from None
    if not head.startswith(b"PK"):
        raise _legacy_error(path, head)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt zip archive ({e})") from None
    with zf:
        names = zf.namelist()
        if len(set(names)) != len(names):
            raise CheckpointError(f"{path}: zip archive with duplicate entry names")
        root = _find_root(path, names)
        big = False
        if f"{root}/byteorder" in names:
            order = _read_small(path, zf, f"{root}/byteorder").strip()
            if order not in (b"little", b"big"):
                raise CheckpointError(f"{path}: unknown byteorder record {order[:20]!r}")
            big = order == b"big"
        info = zf.getinfo(f"{root}/data.pkl")
        if info.file_size > _MAX_PICKLE:
            raise CheckpointError(f"{path}: data.pkl claims {info.file_size} bytes; refusing (> {_MAX_PICKLE})")
        check_zip_bomb(path, info)
        data = _read_small(path, zf, info.filename, _MAX_PICKLE)
        try:
            obj = _SafeUnpickler(data, path, zf, root, big).load()
        except CheckpointError as e:
            if path in str(e):
                raise
            raise CheckpointError(f"{path}: {e}") from None   # raised inside an allowed rebuild function
        except RecursionError:
            raise CheckpointError(f"{path}: data.pkl nests too deeply") from None
        except MemoryError:
            raise CheckpointError(f"{path}: out of memory while loading data.pkl") from None
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as e:
            raise CheckpointError(f"{path}: corrupt archive while reading storages ({e})") from None
        except Exception as e:   # malformed pickle or wrong arguments to an allowed rebuild function
            raise CheckpointError(f"{path}: malformed data.pkl ({type(e).__name__}: {e})") from None
    try:
        return split_top_level(_plainify_top(obj), path, "pth-zip", args_of=_args_of(path))
    except CheckpointError as e:
        if path in str(e):
            raise
        raise CheckpointError(f"{path}: {e}") from None


def _plainify_top(obj):
    # Namespaces nested anywhere in the small entries become dicts; tensors are left as they are.
    if isinstance(obj, NamespaceStub):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: (v.to_dict() if isinstance(v, NamespaceStub) else v) for k, v in obj.items()}
    return obj


def _args_of(path):
    def f(a):
        return _plainify(a) if isinstance(a, dict) else None   # anything else: not usable as args
    return f


def _read_small(path, zf, name, limit=1 << 20) -> bytes:
    try:
        with zf.open(name) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{path}: corrupt zip entry {name!r} ({e})") from None
    if len(data) > limit:
        raise CheckpointError(f"{path}: zip entry {name!r} is larger than {limit} bytes")
    return data
