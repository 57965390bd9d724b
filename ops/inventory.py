"""The generated inventory (build/<env>/inventory.yml), read the way Ansible reads its YAML form.

One reader for the control machine: the converge record's host identities, the configure phase's
split into monitoring and other hosts, and the verify suite's hosts, groups and ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Inventory:
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Inventory:
        return cls(yaml.safe_load(path.read_text()) or {})

    @property
    def root(self) -> dict[str, Any]:
        return dict(self.data.get("all") or {})

    @property
    def vars(self) -> dict[str, Any]:
        """The variables of group `all` (scalemart_ports, addresses, ...)."""
        return dict(self.root.get("vars") or {})

    def _groups(self, group: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, child in ((group if group is not None else self.root).get("children") or {}).items():
            yield name, child or {}
            yield from self._groups(child or {})

    def hosts(self) -> dict[str, dict[str, Any]]:
        """Every host with its own variables (those of each group it is listed in, merged)."""
        out: dict[str, dict[str, Any]] = {}
        for group in [self.root, *(g for _, g in self._groups())]:
            for name, hostvars in (group.get("hosts") or {}).items():
                out.setdefault(name, {}).update(hostvars or {})
        return out

    def group(self, name: str) -> list[str]:
        """The hosts listed directly in group `name` (every host for `all`), sorted."""
        if name == "all":
            return sorted(self.hosts())
        return sorted(
            {host for group_name, group in self._groups() if group_name == name for host in (group.get("hosts") or {})}
        )

    def hostvars(self, host: str) -> dict[str, Any]:
        """The host's variables over those of `all`."""
        return {**self.vars, **self.hosts()[host]}
