"""SDP helpers: put the codec we want first, and read which one was negotiated.

An answerer lists the common codecs in the *offer's* order (aiortc does,
and its sender then uses the first), so the node reorders the payload
types of the offer's video section before applying it: H.264 first when
both sides have it (the node encodes it fastest and every browser decodes
it in hardware or fast software), VP8 when the client asks for it. Among
H.264 variants, packetization-mode=1 with constrained baseline (42e0xx)
comes first — what x264 baseline produces and what browsers expect.
"""

from __future__ import annotations

import re

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/]+)/")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")


def _video_section(lines: list[str]) -> tuple[int, int] | None:
    start = next((i for i, line in enumerate(lines) if line.startswith("m=video ")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return start, end


def _codecs(lines: list[str], start: int, end: int) -> tuple[dict[str, str], dict[str, str]]:
    names: dict[str, str] = {}
    fmtp: dict[str, str] = {}
    for line in lines[start:end]:
        if m := _RTPMAP.match(line):
            names[m.group(1)] = m.group(2).upper()
        elif m := _FMTP.match(line):
            fmtp[m.group(1)] = m.group(2)
    return names, fmtp


def _h264_rank(params: str) -> int:
    p = params.lower()
    rank = 0 if "packetization-mode=1" in p else 2
    if "profile-level-id=42e0" not in p:
        rank += 1
    return rank


def prefer_codec(sdp: str, codec: str) -> str:
    """The same SDP with ``codec`` (``H264``/``VP8``) and its RTX first in the video section."""
    nl = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(nl)
    section = _video_section(lines)
    if section is None:
        return sdp
    start, end = section
    names, fmtp = _codecs(lines, start, end)
    head = lines[start].split(" ")
    if len(head) < 4:
        return sdp
    pts = head[3:]
    want = [pt for pt in pts if names.get(pt) == codec.upper()]
    if not want:
        return sdp
    if codec.upper() == "H264":
        want.sort(key=lambda pt: _h264_rank(fmtp.get(pt, "")))
    rtx = [
        pt
        for base in want
        for pt in pts
        if names.get(pt) == "RTX" and f"apt={base}" in fmtp.get(pt, "").replace(" ", "")
    ]
    first = want + rtx
    lines[start] = " ".join(head[:3] + first + [pt for pt in pts if pt not in first])
    return nl.join(lines)


def video_codecs(sdp: str) -> list[str]:
    """Codec names of the video section, in order (RTX/RED/FEC left out)."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    section = _video_section(lines)
    if section is None:
        return []
    start, end = section
    names, _ = _codecs(lines, start, end)
    out = []
    for pt in lines[start].split(" ")[3:]:
        name = names.get(pt, "")
        if name and name not in ("RTX", "RED", "ULPFEC", "FLEXFEC-03") and name not in out:
            out.append(name)
    return out
