"""Architecture diagrams read from the code and the deployment: the package import graph
(module-group level, from ``ast``) and the Compose services with their links, as Mermaid."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titans.errors import ConfigError

__all__ = [
    "ComposeService",
    "ImportGraph",
    "compose_mermaid",
    "import_graph",
    "import_mermaid",
    "read_compose",
]


@dataclass
class ImportGraph:
    """Groups (``titans.<group>``: a subpackage or a top-level module) and who imports whom."""

    groups: list[str]
    #: (importer, imported) -> number of modules of the importer that import the other group
    edges: dict[tuple[str, str], int]

    def imported_by(self, group: str) -> list[str]:
        """The groups that import ``group``, sorted."""
        return sorted(a for (a, b) in self.edges if b == group)

    def imports_of(self, group: str) -> list[str]:
        """The groups ``group`` imports, sorted."""
        return sorted(b for (a, b) in self.edges if a == group)

    @property
    def foundations(self) -> list[str]:
        """Groups that import no other group and that at least half the others import: drawn
        as a note rather than as an arrow from nearly every box."""
        others = max(len(self.groups) - 1, 1)
        return [
            g
            for g in self.groups
            if not self.imports_of(g) and len(self.imported_by(g)) * 2 >= others
        ]


def _module_name(package: str, relative: Path) -> tuple[str, bool]:
    parts = list(relative.with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts = parts[:-1]
    return ".".join([package, *parts]), is_init


def _imported_modules(tree: ast.AST, module: str, is_init: bool) -> set[str]:
    """Absolute names of every module ``module`` imports (lazy and TYPE_CHECKING ones too)."""
    found: set[str] = set()
    package_parts = module.split(".") if is_init else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(package_parts) - (node.level - 1)
                base = ".".join(package_parts[: max(keep, 0)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from titans import config` imports the module titans.config
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph(package_dir: Path, package: str = "titans") -> ImportGraph:
    """Parse every ``*.py`` under ``package_dir`` and count imports between its groups."""
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    group_of: dict[Path, str] = {}
    for path in files:
        relative = path.relative_to(package_dir)
        if relative.parts == ("__init__.py",):
            continue
        group_of[path] = relative.parts[0].removesuffix(".py")
    groups = sorted(set(group_of.values()))
    edges: dict[tuple[str, str], int] = {}
    for path, group in group_of.items():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            raise ConfigError(
                f"{package}/{path.relative_to(package_dir).as_posix()} does not parse "
                f"(line {exc.lineno}: {exc.msg}); fix it before generating the diagrams"
            ) from exc
        module, is_init = _module_name(package, path.relative_to(package_dir))
        targets = set()
        for name in _imported_modules(tree, module, is_init):
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == package and parts[1] in groups:
                targets.add(parts[1])
        for target in targets - {group}:
            edges[(group, target)] = edges.get((group, target), 0) + 1
    return ImportGraph(groups=groups, edges=dict(sorted(edges.items())))


def import_mermaid(graph: ImportGraph) -> str:
    """A Mermaid flowchart of the graph; foundation groups are listed, not drawn."""
    foundations = set(graph.foundations)
    lines = ["flowchart LR"]
    for group in graph.groups:
        if group not in foundations:
            lines.append(f"    g_{group}[{group}]")
    for (importer, imported), _count in graph.edges.items():
        if imported in foundations or importer in foundations:
            continue
        lines.append(f"    g_{importer} --> g_{imported}")
    return "\n".join(lines)


# ---------------------------------------------------------------- compose


@dataclass
class ComposeService:
    """One Compose service and what links it to the others."""

    name: str
    image: str | None = None
    build: str | None = None
    #: (service, condition) pairs; condition is None for the short list form
    depends_on: list[tuple[str, str | None]] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    #: legacy ``links`` and ``network_mode: service:<name>``
    links: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)


def _names(value: Any, what: str, service: str, source: str) -> list[str]:
    """A Compose "list or mapping" field as its sorted names."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return [str(key) for key in value]
    raise ConfigError(
        f"{source}: services.{service}.{what} must be a list or a mapping, got "
        f"{type(value).__name__}; see the Compose specification"
    )


def read_compose(path: Path, source: str | None = None) -> list[ComposeService] | None:
    """The services of a Compose file (None when it does not exist), sorted by name.

    ``depends_on`` and ``networks`` may be lists or mappings (Compose specification); a
    service without ``networks`` is on the project's ``default`` network, unless it uses
    ``network_mode``.
    """
    source = source or path.name
    if not path.is_file():
        return None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML ({exc}); fix the file") from exc
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ConfigError(f"{source} has no `services:` mapping; see the Compose specification")
    services = []
    for name, spec in sorted(document["services"].items()):
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: services.{name} must be a mapping")
        depends = spec.get("depends_on")
        depends_on: list[tuple[str, str | None]] = []
        if isinstance(depends, dict):
            for target, condition in depends.items():
                cond = condition.get("condition") if isinstance(condition, dict) else None
                depends_on.append((str(target), str(cond) if cond else None))
        else:
            depends_on = [(t, None) for t in _names(depends, "depends_on", name, source)]
        mode = spec.get("network_mode")
        networks = _names(spec.get("networks"), "networks", name, source)
        if not networks and mode is None:
            networks = ["default"]
        links = [str(link).split(":", 1)[0] for link in spec.get("links") or []]
        if isinstance(mode, str) and mode.startswith(("service:", "container:")):
            links.append(mode.split(":", 1)[1])
        build = spec.get("build")
        if isinstance(build, dict):
            build = build.get("dockerfile") or build.get("context")
        services.append(
            ComposeService(
                name=str(name),
                image=str(spec["image"]) if spec.get("image") else None,
                build=str(build) if build else None,
                depends_on=sorted(depends_on),
                networks=sorted(networks),
                links=sorted(links),
                ports=[
                    str(p if not isinstance(p, dict) else _long_port(p))
                    for p in spec.get("ports") or []
                ],
            )
        )
    return services


def _long_port(port: dict[str, Any]) -> str:
    published, target = port.get("published"), port.get("target")
    return f"{published}:{target}" if published else str(target)


def _node(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in name)


def compose_mermaid(services: list[ComposeService]) -> str:
    """Services as boxes, ``depends_on`` as solid arrows (labelled with their condition),
    links as dashed arrows, networks as circles joined to their services by dotted lines."""
    lines = ["flowchart LR"]
    for service in services:
        lines.append(f'    {_node(service.name)}["{service.name}"]')
    networks = sorted({n for s in services for n in s.networks})
    for network in networks:
        lines.append(f'    n_{_node(network)[2:]}(("network: {network}"))')
    for service in services:
        for target, condition in service.depends_on:
            arrow = f"-->|{condition}|" if condition else "-->"
            lines.append(f"    {_node(service.name)} {arrow} {_node(target)}")
        for target in service.links:
            lines.append(f"    {_node(service.name)} -.->|link| {_node(target)}")
    for service in services:
        for network in service.networks:
            lines.append(f"    {_node(service.name)} -.- n_{_node(network)[2:]}")
    return "\n".join(lines)
