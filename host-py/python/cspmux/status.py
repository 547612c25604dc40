"""csp-muxd's status report, parsed into plain data.

The daemon answers a status request with lines of text (what ``csp status``
prints); ``parse_status`` turns them into a dict. Lines it does not know are
kept under ``"other"`` rather than dropped or fatal, so a newer daemon does
not break an older package.
"""

import re
from typing import Any, Dict, List

_APP = re.compile(r'^app (\d+) name=(".*") ports=(\S*) queued=(\d+)$')


def _ports(text: str) -> List[Dict[str, Any]]:
    out = []
    for item in filter(None, text.split(",")):
        addr, _, port = item.partition(":")
        out.append({"addr": int(addr), "port": None if port == "ANY" else int(port)})
    return out


def parse_status(text: str) -> Dict[str, Any]:
    """The dict form of the daemon's status text: ``node`` (int),
    ``uptime`` (seconds), ``socket`` (path), ``links`` (list of str),
    ``apps`` (list of dicts: ``id``, ``name``, ``ports``, ``queued``),
    ``other`` (lines not understood)."""
    status: Dict[str, Any] = {
        "node": None,
        "uptime": None,
        "socket": None,
        "links": [],
        "apps": [],
        "other": [],
    }
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        try:
            if key == "node":
                status["node"] = int(rest)
            elif key == "uptime":
                status["uptime"] = int(rest.split()[0])
            elif key == "socket":
                status["socket"] = rest
            elif key == "link":
                status["links"].append(rest)
            elif key == "app" and _APP.match(line):
                m = _APP.match(line)
                assert m is not None
                status["apps"].append(
                    {
                        "id": int(m.group(1)),
                        # The daemon writes the name as a Rust debug string.
                        "name": m.group(2)[1:-1].replace('\\"', '"').replace("\\\\", "\\"),
                        "ports": _ports(m.group(3)),
                        "queued": int(m.group(4)),
                    }
                )
            elif line.strip():
                status["other"].append(line)
        except (ValueError, IndexError):
            status["other"].append(line)
    return status
