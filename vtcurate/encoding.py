"""Bytes as text: the data URIs the HTML report embeds and OpenAI-style image messages carry."""

from __future__ import annotations

import base64


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
