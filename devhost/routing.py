"""Azure Functions route templates: `a/{name}`, optional `{name?}`, constraints `{id:int}`, catch-all `{*rest}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?", "bool": r"(?i:true|false)", "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "datetime": r"[^/]+",
}
_PARAM = re.compile(r"^\{(\*{0,2})([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?(?:=([^}]*))?\}$")


class RouteError(ValueError):
    pass


@dataclass
class RouteTemplate:
    template: str
    regex: re.Pattern
    precedence: tuple  # lower sorts first: literals beat parameters beat catch-alls
    defaults: dict[str, str]

    @classmethod
    def compile(cls, template: str) -> "RouteTemplate":
        segments = [s for s in template.strip("/").split("/") if s != ""] if template.strip("/") else []
        pattern = ""
        precedence = []
        defaults: dict[str, str] = {}
        for index, segment in enumerate(segments):
            match = _PARAM.match(segment)
            if match is None:
                if "{" in segment or "}" in segment:
                    raise RouteError(f"route '{template}': mixed literal/parameter segments are not supported")
                pattern += "/" + re.escape(segment)
                precedence.append(0)
                continue
            star, name, constraint, optional, default = match.groups()
            if star:
                if index != len(segments) - 1:
                    raise RouteError(f"route '{template}': a catch-all must be the last segment")
                pattern += f"(?:/(?P<{name}>.*))?"
                precedence.append(4)
                continue
            if constraint and constraint.lower() not in _CONSTRAINTS:
                raise RouteError(f"route '{template}': unknown constraint '{constraint}'")
            value = _CONSTRAINTS[constraint.lower()] if constraint else r"[^/]+"
            if default is not None:
                defaults[name] = default
            if optional or default is not None:
                pattern += f"(?:/(?P<{name}>{value}))?"
                precedence.append(3)
            else:
                pattern += f"/(?P<{name}>{value})"
                precedence.append(1 if constraint else 2)
        return cls(template, re.compile("^" + pattern + "/?$"), tuple(precedence), defaults)

    def match(self, path: str) -> dict[str, Any] | None:
        """`path` starts with '/' and is relative to the route prefix."""
        m = self.regex.match(path if path != "/" else "")
        if m is None and path == "/":
            m = self.regex.match("/")
        if m is None:
            return None
        params = {k: v for k, v in m.groupdict().items() if v is not None}
        for name, value in self.defaults.items():
            params.setdefault(name, value)
        return params
