"""Checking an archive whole (``inspect``, behind ``bbarc verify``) and salvaging what is intact into a new one
(``recover``, behind ``bbarc recover``).

Both start from the same pass: the archive is opened strictly; if its footer (trailer and index) is missing or
damaged, the records are found by the forward recovery scan instead (``ArchiveReader(recover=True)``). Each chunk
is then checked on its own: its payload and side data against their checksums, and (``deep``) decoded and
compared with the content hash the index recorded. A missing or damaged footer is itself a failure: a verify
that found every scanned chunk intact must still say that the file is not whole.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


from bbarc.errors import CodingError, CorruptArchiveError
from bbarc.formats.atomic import check_target
from bbarc.formats.container import ArchiveWriter
from bbarc.formats.layout2 import SCHEME_BITS_BACK, SCHEME_STORED

from .api import Archive, ChunkReport
from .execution import lockstep_groups
from .payload import raw_hash


@dataclass(frozen=True)
class Inspection:
    """What checking an archive found. ``footer_error``: why the footer could not be used (None when intact);
    the chunks are then those a recovery scan found. ``item_count``: the items the archive's metadata declares."""

    path: str
    version: int
    deep: bool
    footer_error: str | None
    item_count: int
    chunks: list[ChunkReport]
    attachments: list[tuple[str, str | None]]

    @property
    def intact(self) -> list[ChunkReport]:
        return [r for r in self.chunks if r.error is None]

    @property
    def bad(self) -> list[ChunkReport]:
        return [r for r in self.chunks if r.error is not None]

    @property
    def bad_attachments(self) -> list[tuple[str, str]]:
        return [(name, error) for name, error in self.attachments if error is not None]

    @property
    def intact_items(self) -> int:
        return sum(r.item_count for r in self.intact)

    @property
    def ok(self) -> bool:
        return self.footer_error is None and not self.bad and not self.bad_attachments

    def lost_ranges(self) -> list[tuple[int, int]]:
        """Item ranges ``[start, stop)`` of the declared items that no intact chunk holds."""
        lost, at = [], 0
        for r in self.intact:
            if r.first_item > at:
                lost.append((at, r.first_item))
            at = r.first_item + r.item_count
        if self.item_count > at:
            lost.append((at, self.item_count))
        return lost

    def as_dict(self) -> dict:
        return dict(path=self.path, version=self.version, deep=self.deep, ok=self.ok,
                    footer_ok=self.footer_error is None, footer_error=self.footer_error,
                    chunks=len(self.chunks), intact_chunks=len(self.intact), items=self.item_count,
                    intact_items=self.intact_items, bad=[dataclasses.asdict(r) for r in self.bad],
                    bad_attachments=[dict(name=n, error=e) for n, e in self.bad_attachments],
                    attachments=len(self.attachments), lost=[list(r) for r in self.lost_ranges()])


def open_for_checking(path) -> tuple[Archive, str | None]:
    """The archive opened strictly, or through the recovery scan when its footer is unusable; and why it was."""
    try:
        return Archive(path, cache_chunks=0), None
    except CorruptArchiveError as exc:
        strict = exc
    try:
        archive = Archive(path, cache_chunks=0, recover=True)
    except CorruptArchiveError:
        raise strict from None  # the header is damaged too: nothing says where records start or what they mean
    return archive, archive._reader.recovery_reason or str(strict)


def check_chunks(archive: Archive, deep: bool, progress=None, keep=None) -> list[ChunkReport]:
    """Each chunk checked (see the module docstring). ``keep(index, items or None)`` sees each intact chunk
    with its decoded items (``deep``) before the next group is decoded, so memory stays at one lockstep group."""
    reader, reports = archive._reader, {}
    for index, error in reader.verify():
        entry = reader.chunks[index]
        reports[index] = ChunkReport(index, entry.first_item, entry.item_count, error)
    good = [i for i, r in reports.items() if r.error is None]
    total = reader.item_count
    if progress and len(good) < len(reports):
        progress(sum(r.item_count for r in reports.values() if r.error is not None), total)
    for group in lockstep_groups(good, archive._lockstep if deep else max(1, len(good))):
        decoded = _decoded(archive, group) if deep else dict.fromkeys(group)
        for i in group:
            if isinstance(decoded[i], str):
                reports[i] = dataclasses.replace(reports[i], error=decoded[i])
            elif keep is not None:
                keep(i, decoded[i])
        if progress:
            progress(sum(reports[i].item_count for i in group), total)
    return [reports[i] for i in sorted(reports)]


def _decoded(archive: Archive, group: list[int]) -> dict:
    """Chunk -> its items, or the error decoding it gave. A group is decoded together (shared network calls);
    when one of its chunks fails, each is decoded alone so that the failure is pinned to its chunk."""
    try:
        return {i: d.items for i, d in zip(group, archive.decode_chunks(group))}
    except (CorruptArchiveError, CodingError) as exc:
        if len(group) == 1:
            return {group[0]: str(exc)}
    out = {}
    for i in group:
        try:
            out[i] = archive.decode_chunks([i])[0].items
        except (CorruptArchiveError, CodingError) as exc:
            out[i] = str(exc)
    return out


def inspect(path, deep: bool = False, progress=None) -> Inspection:
    """Check the archive at ``path`` whole: footer, every chunk, every attachment. Never raises for damage the
    recovery scan can get past; a damaged header (nothing is readable) raises CorruptArchiveError."""
    archive, footer_error = open_for_checking(path)
    with archive:
        chunks = check_chunks(archive, deep, progress)
        return Inspection(str(path), archive._reader.version, deep, footer_error, archive.metadata.item_count,
                          chunks, archive._reader.verify_attachments())


@dataclass(frozen=True)
class RecoverResult:
    """What ``recover`` wrote: ``kept`` maps old item ranges ``[start, stop)`` to where they start in the new
    archive (items are renumbered contiguously); ``lost`` lists the old ranges left out."""

    source: str
    output: str
    inspection: Inspection
    kept: list[tuple[int, int, int]]
    lost: list[tuple[int, int]]
    items: int
    chunks: int
    attachments: list[str]

    def as_dict(self) -> dict:
        check = self.inspection
        return dict(source=self.source, output=self.output, items=self.items, chunks=self.chunks,
                    declared_items=check.item_count, footer_error=check.footer_error,
                    bad=[dataclasses.asdict(r) for r in check.bad],
                    kept=[dict(old=[a, b], new=[n, n + b - a]) for a, b, n in self.kept],
                    lost=[list(r) for r in self.lost], attachments=self.attachments,
                    lost_attachments=[n for n, _ in check.bad_attachments])


def recover(path, output, deep: bool = True, overwrite: bool = False, progress=None) -> RecoverResult:
    """Write every intact chunk (and attachment) of the archive at ``path`` into a new, valid archive at
    ``output`` (format 2, the same metadata, a fresh index; items renumbered contiguously). Intact means: found
    through the footer or the recovery scan, payload and side data matching their checksums, and (``deep``, the
    default) decoding to the content hash recorded. A chunk whose content hash is unknown (found by the scan) is
    decoded in any case, to record it. Format-1 archives are recovered into format 2; their side data lives in
    the chunks' seed headers, which the copied payloads keep."""
    check_target(output, inputs=[path], overwrite=overwrite)  # the rule every bbarc writer follows
    archive, footer_error = open_for_checking(path)
    with archive:
        reader, meta = archive._reader, archive.metadata
        digests: dict[int, str] = {}

        def keep(i: int, items) -> None:
            recorded = reader.chunks[i].raw_hash
            if not recorded and items is None:
                items = archive.decode_chunks([i])[0].items
            digests[i] = recorded or raw_hash(items)

        # Two passes: the header states the item count, known only once every chunk was checked; the second
        # pass copies the checked payloads (read and verified again, never decoded again).
        chunks = check_chunks(archive, deep, progress, keep=keep)
        check = Inspection(str(path), reader.version, deep, footer_error, meta.item_count, chunks,
                           reader.verify_attachments())
        intact = [r.index for r in check.intact]
        if not intact:
            raise CorruptArchiveError(f"{path}: no intact chunk found; nothing to recover")
        kept: list[tuple[int, int, int]] = []
        lost = check.lost_ranges()
        saved = [name for name, error in check.attachments if error is None]
        new_meta = dataclasses.replace(meta, item_count=check.intact_items)
        with ArchiveWriter(output, new_meta.to_json(2), version=2, overwrite=overwrite) as writer:
            for i in intact:
                entry, start = reader.chunks[i], writer.item_count
                writer.write_chunk(reader.read_chunk(i), start, entry.item_count, digests[i],
                                   scheme=_scheme(archive, entry), item_shapes=entry.shapes or meta.item_shape,
                                   side=reader.read_side(i) or None)
                if kept and kept[-1][1] == entry.first_item:  # contiguous with the run before: extend it
                    a, _, n = kept.pop()
                    kept.append((a, entry.stop_item, n))
                else:
                    kept.append((entry.first_item, entry.stop_item, start))
            for name in saved:
                writer.add_attachment(name, reader.read_attachment(name))
            writer.close(final=dict(item_count=writer.item_count, chunks=writer.chunk_count,
                                    recovered_from=dict(path=str(path), lost=[list(r) for r in lost])))
    return RecoverResult(str(path), str(output), check, kept, lost, check.intact_items, len(intact), saved)


def _scheme(archive: Archive, entry) -> str:
    """A chunk's coding scheme; format 1 did not record it: a model-free archive's chunks are stored whole."""
    if entry.scheme is not None:
        return entry.scheme
    return SCHEME_STORED if archive.model().item_codec() is None else SCHEME_BITS_BACK
