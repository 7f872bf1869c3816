"""The .gcm module file: graphs, weights and compiled artifacts in one portable file.

Layout (all integers little-endian; see ir/proto/README.md):

    offset 0   magic            8 bytes  b"\\x89GCM\\r\\n\\x1a\\n"
    offset 8   format version   u32      FORMAT_VERSION (the container)
    offset 12  opset version    u32      OPSET_VERSION (what the ops mean)
    offset 16  metadata offset  u64      where the protobuf `Module` message starts
    offset 24  metadata length  u64
    offset 32  metadata crc32   u32
    offset 36  reserved         u32      0
    offset 40  payload          weights and artifacts, each 64-byte aligned, then metadata

Readers check everything before they trust it: magic, both versions (a newer one is refused,
never guessed at), every offset and length against the file size, every checksum, every weight's
byte length against its dtype and shape (before anything is allocated), and the graphs with the
verifier. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ir import dtypes
from ir.errors import IRError, ModuleFormatError
from ir.fileio import atomic_write
from ir.graph import Graph
from ir.proto import gcm_pb2
from ir.types import TensorType
from ir.verify import verify

MAGIC = b"\x89GCM\r\n\x1a\n"
FORMAT_VERSION = 1
OPSET_VERSION = 1
HEADER = struct.Struct("<8sIIQQII")
ALIGN = 64
MAX_METADATA = 1 << 30  # a metadata message larger than this is not a module we wrote
MAX_ELEMENTS = 1 << 40  # no value of a graph we load may have more elements (its sizes are known)


@dataclass(frozen=True)
class Artifact:
    """A compiled artifact's table entry (the bytes stay in the file until a backend asks)."""

    target: str
    kind: str
    offset: int
    length: int
    sha256: str
    properties: dict[str, str]


@dataclass
class ModuleFile:
    """What a .gcm file holds: graphs by method name, weight arrays, producer and metadata."""

    methods: dict[str, Graph]
    weights: dict[str, np.ndarray]
    producer: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    opset_version: int = OPSET_VERSION
    path: str = ""
    buffer: object = field(default=None, repr=False, compare=False)  # the file's memory map (or bytes)

    def artifact_bytes(self, artifact: Artifact) -> bytes:
        """An artifact's bytes, checked against its SHA-256 (ModuleFormatError if they differ)."""
        data = bytes(self.buffer[artifact.offset : artifact.offset + artifact.length])
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise _fail(
                self.path, f"artifact for {artifact.target!r}: checksum mismatch at offset {artifact.offset}"
            )
        return data


# --- writing ---


def _type_proto(t: TensorType) -> gcm_pb2.TensorType:
    proto = gcm_pb2.TensorType(dtype=t.dtype.name)
    for d in t.shape:
        proto.shape.add(**({"size": d} if isinstance(d, int) else {"symbol": d}))
    return proto


def _attr_proto(value) -> gcm_pb2.AttrValue:
    if value is None:
        return gcm_pb2.AttrValue(none=True)
    if isinstance(value, bool):
        return gcm_pb2.AttrValue(b=value)
    if isinstance(value, int):
        return gcm_pb2.AttrValue(i=value)
    if isinstance(value, float):
        return gcm_pb2.AttrValue(f=value)
    if isinstance(value, str):
        return gcm_pb2.AttrValue(s=value)
    if isinstance(value, Graph):
        return gcm_pb2.AttrValue(graph=_graph_proto(value))
    if isinstance(value, (tuple, list)):
        items = gcm_pb2.AttrList(items=[_attr_proto(v) for v in value])
        return gcm_pb2.AttrValue(**({"tuple": items} if isinstance(value, tuple) else {"list": items}))
    raise IRError(f"attribute value {value!r} of type {type(value).__name__} cannot be stored")


def _graph_proto(graph: Graph) -> gcm_pb2.Graph:
    proto = gcm_pb2.Graph(
        name=graph.name, weights=list(graph.weights), outputs=[v.name for v in graph.outputs]
    )
    for v in graph.inputs:
        proto.inputs.add(name=v.name, type=_type_proto(v.type))
    for node in graph.nodes:
        n = proto.nodes.add(
            op=node.op, inputs=[v.name if v is not None else "" for v in node.inputs], scope=node.scope
        )
        for v in node.outputs:
            n.outputs.add(name=v.name, type=_type_proto(v.type))
        for key in sorted(node.attrs):
            n.attrs.add(name=key, value=_attr_proto(node.attrs[key]))
    return proto


def write_module(
    path,
    methods: dict[str, Graph],
    producer: str = "",
    metadata: dict[str, str] | None = None,
    artifacts: list[tuple[str, str, dict[str, str], bytes]] = (),
) -> None:
    """Write graphs (sharing weights by name) and `artifacts` ((target, kind, properties,
    bytes): compiled code) to `path`, atomically; or to a binary file object (anything with
    `write`, such as io.BytesIO), at its position."""
    weights: dict[str, np.ndarray] = {}

    for graph in methods.values():
        verify(graph)
        for name, data in graph.all_weights():  # (its subgraphs' too)
            if name in weights and not np.array_equal(weights[name], data):
                raise IRError(f"weight {name!r} differs between graphs of the module")
            weights[name] = data
    module = gcm_pb2.Module(opset_version=OPSET_VERSION, producer=producer, metadata=dict(metadata or {}))
    payload = bytearray()
    offset = HEADER.size
    for name, data in weights.items():
        pad = (-(offset + len(payload))) % ALIGN
        payload += b"\0" * pad
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        start = offset + len(payload)
        t = TensorType(dtypes.from_numpy(data.dtype), tuple(data.shape))
        module.weights.add(
            name=name, type=_type_proto(t), offset=start, length=len(raw), crc32=zlib.crc32(raw)
        )
        payload += raw
    for target, kind, properties, data in artifacts:
        pad = (-(offset + len(payload))) % ALIGN
        payload += b"\0" * pad
        start = offset + len(payload)
        module.artifacts.add(
            target=target,
            kind=kind,
            offset=start,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            properties=dict(properties),
        )
        payload += data
    for graph in methods.values():
        module.methods.append(_graph_proto(graph))
    meta = module.SerializeToString()
    pad = (-(offset + len(payload))) % ALIGN
    payload += b"\0" * pad
    meta_offset = offset + len(payload)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, OPSET_VERSION, meta_offset, len(meta), zlib.crc32(meta), 0)
    if hasattr(path, "write"):
        _write_to(path, header + bytes(payload) + meta)
    else:
        atomic_write(path, (header, payload, meta), prefix=".gcm-")


def _write_to(f, data: bytes) -> None:
    if isinstance(f, io.TextIOBase):
        raise TypeError(f"write_module: {f!r} is a text file; open it in binary mode ('wb')")
    f.write(data)


# --- reading ---


def _fail(path, message: str) -> ModuleFormatError:
    return ModuleFormatError(f"{path}: {message}")


def _type_from(proto, path, where: str) -> TensorType:
    try:
        dtype = dtypes.from_name(proto.dtype)
        shape = tuple(d.size if d.WhichOneof("kind") == "size" else d.symbol for d in proto.shape)
        return TensorType(dtype, shape)
    except (TypeError, IRError) as e:
        raise _fail(path, f"{where}: bad type ({e})") from None


def _attr_from(proto, weights: dict[str, np.ndarray], path):
    kind = proto.WhichOneof("kind")
    if kind in (None, "none"):
        return None
    if kind == "graph":
        return _graph_from(proto.graph, weights, path)
    if kind in ("list", "tuple"):
        items = [_attr_from(v, weights, path) for v in getattr(proto, kind).items]
        return tuple(items) if kind == "tuple" else items
    return getattr(proto, kind)


def _graph_from(proto, weights: dict[str, np.ndarray], path) -> Graph:
    graph = Graph(proto.name)
    env = {}
    where = f"method {proto.name!r}"
    try:
        for v in proto.inputs:
            env[v.name] = graph.add_input(v.name, _type_from(v.type, path, where))
        for name in proto.weights:
            if name not in weights:
                raise _fail(path, f"{where} reads weight {name!r}, which the file does not hold")
            env[name] = graph.add_weight(name, weights[name])
        for i, n in enumerate(proto.nodes):
            node_where = f"{where}, node {i} ({n.op})"
            args = []
            for name in n.inputs:
                if name and name not in env:
                    raise _fail(path, f"{node_where}: input {name!r} is not defined before use")
                args.append(env[name] if name else None)
            attrs = {a.name: _attr_from(a.value, weights, path) for a in n.attrs}
            declared = [_type_from(o.type, path, node_where) for o in n.outputs]
            values = graph.add_node(n.op, args, attrs, names=[o.name for o in n.outputs], scope=n.scope)
            if [v.type for v in values] != declared:
                raise _fail(
                    path,
                    f"{node_where}: declared output types {declared} differ from {[v.type for v in values]}",
                )
            for v in values:
                count = 1
                for d in v.type.shape:
                    count *= d if isinstance(d, int) else 1
                if count > MAX_ELEMENTS:
                    raise _fail(path, f"{node_where}: value %{v.name} of type {v.type} has {count} elements")
            env.update({v.name: v for v in values})
        missing = [name for name in proto.outputs if name not in env]
        if missing:
            raise _fail(path, f"{where}: output {missing[0]!r} is not defined")
        graph.set_outputs([env[name] for name in proto.outputs])
        verify(graph)
    except ModuleFormatError:
        raise
    except (IRError, TypeError, ValueError, KeyError) as e:
        raise _fail(path, f"{where}: invalid graph ({e})") from None
    return graph


def read_module(source) -> ModuleFile:
    """Read and validate a .gcm module: a path (the file is memory-mapped and weight arrays
    are read-only views of the map), the file's bytes (bytes: views of them; a bytearray or
    memoryview is copied once, so later changes to it cannot change the weights) or a binary
    file object (read from its position to the end)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        path, buf = "<bytes>", source if isinstance(source, bytes) else bytes(source)
    elif hasattr(source, "read"):
        if isinstance(source, io.TextIOBase):
            raise TypeError(f"read_module: {source!r} is a text file; open it in binary mode ('rb')")
        path, buf = getattr(source, "name", None) or "<file object>", source.read()
        if not isinstance(buf, bytes):
            raise TypeError(f"read_module: {source!r}.read() gave {type(buf).__name__}, expected bytes")
        path = str(path)
    else:
        path = os.fspath(source)
        with open(path, "rb") as f:
            short = os.fstat(f.fileno()).st_size < HEADER.size  # (read whole: an empty file has no map)
            buf = f.read() if short else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(buf)
    if size < HEADER.size:
        raise _fail(path, f"truncated: {size} bytes, shorter than the {HEADER.size}-byte header")
    magic, fmt, opset, meta_off, meta_len, meta_crc, _ = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise _fail(path, f"not a graphc module file (magic {magic!r}, expected {MAGIC!r})")
    if fmt > FORMAT_VERSION:
        raise _fail(
            path,
            f"written in module format {fmt}; this graphc reads format "
            f"{FORMAT_VERSION} and older. Upgrade graphc to load it.",
        )
    if opset > OPSET_VERSION:
        raise _fail(
            path, f"uses op set {opset}; this graphc knows op set {OPSET_VERSION}. Upgrade graphc to load it."
        )
    if meta_len > MAX_METADATA or meta_off < HEADER.size or meta_off + meta_len > size:
        raise _fail(
            path,
            f"metadata at offset {meta_off} with length {meta_len} lies outside "
            f"the file of {size} bytes (truncated or damaged)",
        )
    meta = bytes(buf[meta_off : meta_off + meta_len])
    if zlib.crc32(meta) != meta_crc:
        raise _fail(path, f"metadata checksum mismatch at offset {meta_off}; the file is damaged")
    module = gcm_pb2.Module()
    try:
        module.ParseFromString(meta)
    except Exception as e:  # protobuf's DecodeError and friends
        raise _fail(path, f"metadata at offset {meta_off} does not parse ({e})") from None
    if module.opset_version > OPSET_VERSION:
        raise _fail(path, f"metadata op set {module.opset_version} is newer than {OPSET_VERSION}")
    weights = {}
    for w in module.weights:
        where = f"weight {w.name!r}"
        t = _type_from(w.type, path, where)
        if t.symbols:
            raise _fail(path, f"{where}: weights need concrete shapes, got {t}")
        count = 1
        for d in t.shape:
            count *= d
        expected = count * t.dtype.itemsize
        if w.length != expected:
            raise _fail(path, f"{where}: {w.length} bytes stored for {t} ({expected} needed)")
        if w.offset < HEADER.size or w.offset + w.length > meta_off or w.offset % ALIGN:
            raise _fail(
                path,
                f"{where}: bytes at offset {w.offset} (length {w.length}) lie "
                f"outside the weights section [{HEADER.size}, {meta_off})",
            )
        view = memoryview(buf)[w.offset : w.offset + w.length]
        if zlib.crc32(view) != w.crc32:
            raise _fail(path, f"{where}: checksum mismatch at offset {w.offset}; the file is damaged")
        arr = np.frombuffer(view, dtype=t.dtype.np.newbyteorder("<"), count=count)
        weights[w.name] = arr.reshape(t.shape)
    artifacts = []
    for a in module.artifacts:
        if a.offset < HEADER.size or a.offset + a.length > meta_off:
            raise _fail(
                path, f"artifact for {a.target!r}: bytes at offset {a.offset} lie outside the payload"
            )
        artifact = Artifact(a.target, a.kind, a.offset, a.length, a.sha256, dict(a.properties))
        if hashlib.sha256(buf[a.offset : a.offset + a.length]).hexdigest() != a.sha256:
            raise _fail(
                path,
                f"artifact for {a.target!r}: checksum mismatch at offset {a.offset}; the file is damaged",
            )
        artifacts.append(artifact)
    methods = {}
    for g in module.methods:
        if g.name in methods:
            raise _fail(path, f"method {g.name!r} appears twice")
        methods[g.name] = _graph_from(g, weights, path)
    if not methods:
        raise _fail(path, "the file holds no method")
    return ModuleFile(
        methods, weights, module.producer, dict(module.metadata), artifacts, fmt, opset, path, buf
    )
