"""bbarc: lossless dataset archiving with bits-back ANS coding and model plugins.

    import archiver
    archiver.compress("t10k-images-idx3-ubyte.gz", "mnist.bbarc", model="mnist-vae", chunk_size=1000)
    with archiver.open("mnist.bbarc") as a:
        a[0], a[10:20], a.chunk(3), a.metadata
"""
from formats.errors import BbarcError, CodingError, CorruptArchiveError, ModelError, UsageError

from .api import Archive, decompress, open
from .pipeline import CompressResult, compress

__all__ = [
    "Archive", "BbarcError", "CodingError", "CompressResult", "CorruptArchiveError", "ModelError", "UsageError",
    "compress", "decompress", "open",
]
