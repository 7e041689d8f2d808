"""A small, exact multipart/form-data parser: part contents are kept byte for byte."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Part", "parse_multipart"]

_PARAM = re.compile(r';\s*([\w*-]+)="?([^";]*)"?')


@dataclass(frozen=True)
class Part:
    """One form field: its bytes, and the file name and type of a file field."""

    name: str
    content: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


def _params(header: str) -> dict[str, str]:
    return {key.lower(): value for key, value in _PARAM.findall(header)}


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part] | None:
    """The fields of a multipart body by name (a repeated name keeps its last part);
    ``None`` if ``content_type`` is not multipart or has no boundary."""
    if not content_type.lower().startswith("multipart/"):
        return None
    boundary = _params(content_type).get("boundary")
    if not boundary:
        return None
    parts: dict[str, Part] = {}
    for section in body.split(b"--" + boundary.encode())[1:]:
        if section.startswith(b"--"):
            break
        head, _, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        disposition = _params(headers.get("content-disposition", ""))
        field_name = disposition.get("name")
        if field_name is None:
            continue
        parts[field_name] = Part(
            field_name, content, disposition.get("filename"), headers.get("content-type")
        )
    return parts
