"""Reading one small field of a ``multipart/form-data`` body (e.g. ``model``), sans-IO.

Generation operations that upload files (audio transcriptions, image edits) carry their
``model`` as a form field; the body itself is forwarded byte for byte, so this only looks.
"""

from __future__ import annotations

import re

__all__ = ["form_field"]

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_MAX_VALUE = 256


def form_field(body: bytes, content_type: str, name: str) -> str | None:
    """The text value of form field ``name`` (first occurrence), or None."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    delimiter = b"--" + match.group(1).strip().encode("latin-1")
    wanted = re.compile(rb'(?:^|[;\s])name="' + re.escape(name.encode()) + rb'"', re.IGNORECASE)
    for part in body.split(delimiter)[1:]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep or wanted.search(head) is None:
            continue
        if b"filename=" in head:
            return None
        text = value[: _MAX_VALUE + 2].removesuffix(b"\r\n")
        if len(text) > _MAX_VALUE:
            return None
        try:
            return text.decode()
        except UnicodeDecodeError:
            return None
    return None
