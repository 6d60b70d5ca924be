"""Text from files, made safe to show on a terminal.

Archive metadata (source, writer, model ids and versions) and error messages that quote a file's content come from
whoever wrote the file. Written raw, an escape sequence in them drives the terminal (plants a hyperlink, moves the
cursor, rewrites what was printed before), and rich markup in them is interpreted by the console, or crashes it
(``[/bold]`` with nothing open). ``plain`` makes such text inert; ``markup`` does the same for text that goes
into a rich markup string. Nothing here changes ``--json`` output, which ``json.dumps`` already escapes.
"""
from __future__ import annotations

import unicodedata

from rich.markup import escape as _escape_markup

# Format characters that change how the text around them reads (bidirectional overrides and isolates), besides
# the control characters (category Cc: C0, DEL, C1, the escape character among them).
_BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object, newlines: bool = False) -> str:
    """``str(text)`` with every control character (and bidi override) written as a Python escape, ``\\x1b`` for
    ESC; a backslash stays as it is. ``newlines``: keep line breaks (a multi-line message of bbarc's own)."""
    s = str(text)
    return "".join(
        ch if (newlines and ch == "\n") or not (unicodedata.category(ch) == "Cc" or ch in _BIDI) else _escaped(ch)
        for ch in s)


def markup(text: object, newlines: bool = False) -> str:
    """``plain(text)`` made literal inside a rich markup string (``[`` can no longer open a tag)."""
    return _escape_markup(plain(text, newlines))
