"""Wrapping text for narrow panes where a reader expects it: at spaces, before a `.` of a host name or `/ ? & @ (`,
after a `-` or `,` of an id; never in the middle of a word unless one piece is wider than the whole line.
Continuation lines are indented so a wrapped value reads as one. Pure text: no Textual here."""

from __future__ import annotations

BEFORE = set(" .(/?&@")  # a line may break before these (a host's dots, a URL's seams, a space)
AFTER = set("-,_")  # and, only inside a piece wider than the line, after these (the parts of an id)


def _split(text: str, before: set[str], after: set[str]) -> list[str]:
    pieces: list[str] = []
    current = ""
    for i, ch in enumerate(text):
        prev = text[i - 1] if i else ""
        if current and ch in before and not (ch == "/" and prev in ":/") and not current.isspace():
            pieces.append(current)
            current = ""
        current += ch
        if ch in after:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def wrap_line(line: str, width: int, indent: str = "  ") -> list[str]:
    if width <= 0 or len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip(" "))]
    cont = lead + indent if len(lead + indent) < width // 2 else ""
    pieces: list[str] = []
    for piece in _split(line, BEFORE, set()):
        # a piece that cannot fit even on a line of its own is split at its ids' dashes first
        pieces += _split(piece, set(), AFTER) if len(cont) + len(piece.strip(" ")) > width else [piece]
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current.strip() and len(current) + len(piece.rstrip(" ")) > width:
            out.append(current.rstrip(" "))
            current = cont + piece.lstrip(" ")
        else:
            current += piece
        while len(current) > width:  # one piece wider than the line: the only cut inside a word
            out.append(current[:width])
            current = cont + current[width:]
    if current.strip():
        out.append(current.rstrip(" "))
    return out


def wrap_text(text: str, width: int) -> str:
    """Each line of `text` wrapped to `width` columns (see the module's rules)."""
    return "\n".join(w for line in text.split("\n") for w in wrap_line(line, width))
