"""A Griffe extension used only by the docs build (``mkdocs.yml`` loads it by path).

rejectnet's docstrings are Google style but name other objects with Sphinx roles
(``:func:`save```, ``:class:`~rejectnet.RejectHead```) and open their doctests with
``Example:``. Left alone, MkDocs would print the roles literally and render the doctest
lines as nested block quotes. This extension rewrites each docstring before it is parsed:

* ``Example:`` becomes ``Examples:``, the section whose ``>>>`` lines Griffe renders as
  code;
* a role becomes a cross-reference link when its target is documented on one of the
  ``docs/reference`` pages (found by reading their ``::: identifier`` lines), and inline
  code otherwise (private helpers, torch methods). ``~`` keeps only the last name, as in
  Sphinx.

Nothing here touches the package itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([\w.]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.M)
_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)", re.M)
_REFERENCE = Path(__file__).resolve().parent / "reference"


def _rendered_identifiers() -> list[str]:
    """The ``::: identifier`` lines of the API reference pages."""
    found: list[str] = []
    for page in sorted(_REFERENCE.glob("*.md")):
        found += _DIRECTIVE.findall(page.read_text(encoding="utf-8"))
    return found


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if member.is_alias or not isinstance(member, griffe.Object):
            continue
        if member.is_module or member.is_class or member.is_function or member.is_attribute:
            yield from _walk(member)


class SphinxRolesToLinks(griffe.Extension):
    """Turn Sphinx roles into autorefs links or code, and ``Example:`` into ``Examples:``."""

    def __init__(self) -> None:
        super().__init__()
        self.documented: set[str] = set()

    def _collect(self, obj: Any, *, top: bool) -> None:
        """Record the canonical paths of ``obj`` and the public members the docs render."""
        try:
            target = obj.final_target if obj.is_alias else obj
        except griffe.AliasResolutionError:
            return
        if not _public(target.canonical_path):
            return
        self.documented.add(target.canonical_path)
        if target.is_module and not top:
            return  # submodules are not rendered inside their package's page
        if target.is_module:
            exports = target.exports
            names = (
                [e if isinstance(e, str) else e.name for e in exports]
                if exports is not None
                else [n for n in target.members if not n.startswith("_")]
            )
        else:
            names = [n for n in target.members if not n.startswith("_")]
        for name in names:
            if name in target.members:
                self._collect(target.members[name], top=False)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite the docstrings of every object of the ``rejectnet`` package."""
        if pkg.name != "rejectnet":
            return
        collection = loader.modules_collection
        for ident in _rendered_identifiers():
            try:
                self._collect(collection[ident], top=True)
            except (KeyError, griffe.AliasResolutionError):
                continue
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj, obj.docstring.value, collection)

    def _target(self, obj: griffe.Object, name: str, collection: Any) -> str | None:
        head, _, rest = name.partition(".")
        try:
            path = name if head == "rejectnet" else obj.resolve(head) + (f".{rest}" if rest else "")
            target = collection[path]
            canonical: str = (
                target.final_target.canonical_path if target.is_alias else target.canonical_path
            )
        except (KeyError, ValueError, griffe.NameResolutionError, griffe.AliasResolutionError):
            return None
        return canonical if canonical in self.documented else None

    def _rewrite(self, obj: griffe.Object, text: str, collection: Any) -> str:
        def role(match: re.Match[str]) -> str:
            tilde, name = match.groups()
            shown = name.rsplit(".", 1)[-1] if tilde else name
            target = self._target(obj, name, collection)
            return f"[`{shown}`][{target}]" if target else f"`{shown}`"

        return _EXAMPLE.sub(r"\1Examples:", _ROLE.sub(role, text))
