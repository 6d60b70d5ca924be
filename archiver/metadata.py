"""Typed archive metadata: small classes with a JSON round trip, read by attribute, validated whole at open.

The container (``bbarc.formats``) stores one JSON object per archive; this module owns what bbarc puts in it.
Its layout depends on the container's format version (``formats/SPEC.md``): version 1 records the model as flat
keys (id, weights hash, shapes, precisions, architecture), version 2 records the model's ``get_config()``.
Readers dispatch on that version and on the coding scheme the archive names, never on one global value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bbarc.errors import CorruptArchiveError, UsageError

from .model import ItemSpec
from .payload import SUPPORTED_DTYPES, checked_dtype, checked_shape

FORMAT_NAME = "bbarc"
# The integer arithmetic and chain each coding scheme name stands for. A reader accepts an archive whose scheme
# it knows and whose recorded parameters are exactly that scheme's; keys only the encoder uses are not compared.
ENCODER_ONLY = frozenset({"header_zstd_level"})
# Bounds on what the metadata may declare (formats/SPEC.md, "Bounds on sizes read from a file"): one chunk's
# decoded items are held in memory whole, so a chunk may hold at most MAX_CHUNK_BYTES of items.
MAX_CHUNK_BYTES = 1 << 31
# Items per chunk unless asked: each chunk is one chain with a fixed overhead (benchmarks/results/mnist_rates.txt),
# and reading an item decodes the items after it in its chunk, so smaller chunks mean faster random access. (Here,
# not in the pipeline, so that the command line shows it without loading the coder.)
DEFAULT_CHUNK = 256


def _fail(what: str) -> CorruptArchiveError:
    return CorruptArchiveError(f"the archive metadata is malformed: {what}")


def _get(d: dict, key: str, kind, what: str = "metadata"):
    value = d.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise _fail(f"{what} key {key!r} is missing or not {getattr(kind, '__name__', kind)}")
    return value


def _count(d: dict, key: str, what: str = "metadata") -> int:
    value = _get(d, key, int, what)
    if value < 0:
        raise _fail(f"{what} key {key!r} is negative")
    return value


@dataclass(frozen=True)
class ModelRecord:
    """Which model wrote the archive: its config (``Model.get_config()``) and the plugin that provided it."""

    config: dict
    plugin: str
    distribution: str
    version: str

    @property
    def id(self) -> str:
        return self.config["id"]

    @property
    def weights_sha256(self) -> str:
        return str(self.config.get("weights_sha256", ""))

    def to_json(self) -> dict:
        return dict(config=self.config, plugin=self.plugin, distribution=self.distribution, version=self.version)

    @classmethod
    def from_json(cls, d, spec: ItemSpec, container_version: int) -> "ModelRecord":
        if not isinstance(d, dict):
            raise _fail("'model' is not an object")
        who = [str(d.get(k, "")) for k in ("plugin", "distribution", "version")]
        if container_version == 1:
            return cls(_v1_config(d, spec), *who)
        config = _get(d, "config", dict, "model")
        _get(config, "id", str, "model config")
        return cls(config, *who)


# Keys of a version-1 model record that are part of the model's config (the rest say who wrote it).
_V1_CONFIG_KEYS = ("id", "item_shape", "item_dtype", "weights_sha256", "obs_precision", "latent_precision",
                   "latent_layers", "architecture")


def _v1_config(d: dict, spec: ItemSpec) -> dict:
    """A version-1 model record as the config of the model that decodes it. Version 1 wrote dtypes by name
    ("uint8") and, for model-free models, no shape, precisions or layers."""
    _get(d, "id", str, "model")
    if d.get("header_only"):
        return dict(id=d["id"], item_shape=list(spec.shape), item_dtype=spec.dtype.str,
                    weights_sha256=d.get("weights_sha256"))
    config = {k: d[k] for k in _V1_CONFIG_KEYS if k in d}
    config["item_dtype"] = checked_dtype(d.get("item_dtype"), "model item_dtype").str
    return config


def _check_model_spec(config: dict, spec: ItemSpec) -> None:
    """The model must code items of the archive's shape and dtype, where its config says: else a decoder would
    fill the archive's items with the model's (numpy broadcasts) and return wrong data."""
    shape, dtype = config.get("item_shape"), config.get("item_dtype")
    if shape is not None and checked_shape(shape, "model item_shape") != spec.shape:
        raise _fail(f"the model codes items of shape {tuple(shape)}, the archive holds {spec.shape}")
    if dtype is not None and checked_dtype(dtype, "model item_dtype") != spec.dtype:
        raise _fail(f"the model codes items of dtype {str(dtype)[:20]}, the archive holds {spec.dtype.str}")


@dataclass(frozen=True)
class CodingScheme:
    """The integer arithmetic and chain an archive was coded with (``bbarc.chain``'s scheme parameters)."""

    params: dict

    @property
    def name(self) -> str:
        return str(self.params.get("scheme"))

    def check_supported(self, ours: dict, path: str) -> None:
        """UsageError unless this bbarc implements the recorded scheme exactly."""
        theirs = {k: v for k, v in self.params.items() if k not in ENCODER_ONLY}
        ours = {k: v for k, v in ours.items() if k not in ENCODER_ONLY}
        if theirs != ours:
            diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise UsageError(f"{path} uses coding scheme {self.name!r} with parameters this bbarc does not "
                             f"implement ({', '.join(diff[:8])}); a newer bbarc may read it")


@dataclass(frozen=True)
class ArchiveMetadata:
    """Everything bbarc records about an archive, validated whole at open."""

    writer: str
    source: str
    item_spec: ItemSpec
    source_dtype: np.dtype  # the input's dtype with its byte order: decompression writes this
    item_count: int
    chunk_size: int
    model: ModelRecord
    coding: CodingScheme
    side: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)  # keys a later bbarc added: kept, not interpreted
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the JSON as read (``bbarc info --json``)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.item_spec.shape

    @property
    def dtype(self) -> np.dtype:
        return self.item_spec.dtype

    @property
    def raw_bytes(self) -> int:
        return self.item_count * self.item_spec.item_bytes

    def check_index(self, chunks, recovered: bool = False) -> None:
        """The index must agree with the metadata: every chunk holds at most ``chunk_size`` items (which bounds
        a decoded chunk) and the chunks hold ``item_count`` items (at most that many after a recovery scan)."""
        for entry in chunks:
            if entry.item_count > self.chunk_size:
                raise _fail(f"chunk {entry.index} holds {entry.item_count} items, more than chunk_size "
                            f"{self.chunk_size}")
        total = chunks[-1].stop_item if chunks else 0
        if total > self.item_count or total != self.item_count and not recovered:
            raise _fail(f"the index holds {total} items, the metadata says {self.item_count}")

    def bits_per_dim(self, archive_bytes: int) -> float:
        return bits_per_dim(archive_bytes, self.item_count * self.item_spec.dims)

    def to_json(self, container_version: int = 2) -> dict:
        if container_version != 2:
            raise UsageError(f"this bbarc writes metadata for container version 2, not {container_version}")
        return dict(
            self.extra, format=FORMAT_NAME, writer=self.writer, source=self.source,
            item_shape=list(self.item_shape), item_dtype=self.dtype.str, source_dtype=self.source_dtype.str,
            item_count=self.item_count, chunk_size=self.chunk_size, model=self.model.to_json(),
            codec=dict(self.coding.params), side=list(self.side),
        )

    @classmethod
    def from_json(cls, d: dict, container_version: int) -> "ArchiveMetadata":
        if container_version not in (1, 2):
            raise _fail(f"no metadata layout for container version {container_version}")
        if d.get("format") != FORMAT_NAME:
            raise CorruptArchiveError("the container holds no bbarc dataset metadata")
        spec = ItemSpec(checked_shape(d.get("item_shape"), "item_shape"),
                        checked_dtype(d.get("item_dtype"), "item_dtype"))
        source_dtype = checked_dtype(d.get("source_dtype", spec.dtype.str), "source_dtype")
        if source_dtype.newbyteorder("=") != spec.dtype.newbyteorder("="):
            raise _fail("source_dtype and item_dtype differ beyond byte order")
        side = d.get("side", [])
        if not isinstance(side, list) or not all(isinstance(s, str) for s in side):
            raise _fail("'side' is not a list of names")
        chunk_size = _count(d, "chunk_size")
        if chunk_size < 1:
            raise _fail("chunk_size must be at least 1")
        if not chunk_fits(spec, chunk_size):
            raise _fail(f"a chunk of {chunk_size} items of {spec.item_bytes} bytes is empty or over the "
                        f"{MAX_CHUNK_BYTES}-byte bound")
        model = ModelRecord.from_json(d.get("model"), spec, container_version)
        _check_model_spec(model.config, spec)
        known = {"format", "writer", "source", "item_shape", "item_dtype", "source_dtype", "item_count", "chunk_size",
                 "model", "codec", "side", "chunks"}
        return cls(
            writer=str(d.get("writer", "")), source=str(d.get("source", "")), item_spec=spec,
            source_dtype=source_dtype, item_count=_count(d, "item_count"), chunk_size=chunk_size,
            model=model,
            coding=CodingScheme(_get(d, "codec", dict)), side=tuple(side),
            extra={k: v for k, v in d.items() if k not in known}, raw=d,
        )


def chunk_fits(spec: ItemSpec, chunk_size: int) -> bool:
    """Whether chunks of ``chunk_size`` items of ``spec`` stay within ``MAX_CHUNK_BYTES`` (items of no bytes do
    not): readers refuse archives that break it, so the writer checks it too."""
    return 1 <= spec.item_bytes <= MAX_CHUNK_BYTES // chunk_size


def bits_per_dim(archive_bytes: int, dims: int) -> float:
    """The rate every report uses: bits of archive file per stored value."""
    return 8 * archive_bytes / dims if dims else math.nan
