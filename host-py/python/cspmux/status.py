"""csp-muxd's status report, parsed into plain data.

The daemon answers a status request with records, one per line (what
``csp status`` prints; the grammar is csp-ipc's ``record`` module and
``docs/ipc.md``): ``kind arg... key=value...``, a token in double quotes
when it holds spaces, quotes, ``=``, ``\\`` or control characters.
``parse_record`` reads one line; ``parse_status`` turns a status reply into
a dict. Lines it does not know are kept under ``"other"`` rather than
dropped or fatal, so a newer daemon does not break an older package.
"""

from typing import Any, Dict, List, Optional, Tuple

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _token(line: str, i: int) -> Tuple[str, bool, int]:
    """Read the token at ``line[i]``: (text, was quoted, index after it)."""
    if line[i] != '"':
        end = i
        while end < len(line) and not line[end].isspace() and line[end] != "=":
            end += 1
        return line[i:end], False, end
    out = []
    i += 1
    while i < len(line):
        c = line[i]
        if c == '"':
            return "".join(out), True, i + 1
        if c == "\\":
            e = line[i + 1 : i + 2]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e == "x":
                out.append(chr(int(line[i + 2 : i + 4], 16)))
                i += 4
                continue
            raise ValueError("bad escape in %r" % line)
        out.append(c)
        i += 1
    raise ValueError("unterminated quote in %r" % line)


def parse_record(line: str) -> Dict[str, Any]:
    """One record as ``{"kind": str, "args": [str], "fields": {str: str}}``;
    ``ValueError`` when the line is not a record."""
    i = len(line) - len(line.lstrip())
    if i == len(line):
        raise ValueError("empty record")
    kind, _, i = _token(line, i)
    record: Dict[str, Any] = {"kind": kind, "args": [], "fields": {}}
    while True:
        while i < len(line) and line[i].isspace():
            i += 1
        if i == len(line):
            return record
        tok, quoted, i = _token(line, i)
        if line[i : i + 1] == "=":
            if quoted or not tok:
                raise ValueError("field without a key in %r" % line)
            value, _, i = _token(line, i + 1)
            record["fields"][tok] = value
        else:
            record["args"].append(tok)


def _ports(text: str) -> List[Dict[str, Any]]:
    out = []
    for item in filter(None, text.split(",")):
        addr, _, port = item.partition(":")
        out.append({"addr": int(addr), "port": None if port == "ANY" else int(port)})
    return out


def _one_arg(r: Dict[str, Any]) -> Optional[str]:
    return r["args"][0] if len(r["args"]) == 1 and not r["fields"] else None


def parse_status(text: str) -> Dict[str, Any]:
    """The dict form of the daemon's status reply: ``node`` (int),
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
        if not line.strip():
            continue
        try:
            r = parse_record(line)
            kind = r["kind"]
            if kind == "node" and _one_arg(r) is not None:
                status["node"] = int(r["args"][0])
            elif kind == "uptime" and _one_arg(r) is not None:
                status["uptime"] = int(r["args"][0])
            elif kind == "socket" and _one_arg(r) is not None:
                status["socket"] = r["args"][0]
            elif kind == "link":
                status["links"].append(line.partition(" ")[2])
            elif kind == "app" and len(r["args"]) == 1:
                f = r["fields"]
                status["apps"].append(
                    {
                        "id": int(r["args"][0]),
                        "name": f["name"],
                        "ports": _ports(f["ports"]),
                        "queued": int(f["queued"]),
                    }
                )
            else:
                status["other"].append(line)
        except (ValueError, IndexError, KeyError):
            status["other"].append(line)
    return status
