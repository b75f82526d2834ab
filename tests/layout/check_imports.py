#!/usr/bin/env python3
"""Fails when two source files import each other: Rust files of one crate, or TypeScript
files of the web page and the TypeScript client.

For every `crates/*/src` tree, each file's `use crate::...`, `use super::...` and inline
`crate::a::b::` paths are resolved to the file that defines the module they name (the
longest prefix that is a file: `a/b.rs`, `a/b/mod.rs`, `a.rs` or `a/mod.rs`). A pair of
files that name each other is a cycle a reader has to hold in their head at once; the
module split is then wrong. Run by tests/run.sh.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
USE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_path(src: pathlib.Path, file: pathlib.Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def resolve(src: pathlib.Path, parts: list[str]) -> pathlib.Path | None:
    for n in range(len(parts), 0, -1):
        base = src.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
            if candidate.is_file():
                return candidate
    return None


def references(src: pathlib.Path, file: pathlib.Path) -> set[pathlib.Path]:
    text = file.read_text()
    # Unit tests inside the file are not part of its module graph.
    text = text.split("#[cfg(test)]", 1)[0]
    # Comments (doc links included) name modules without importing them.
    text = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    here = module_path(src, file)
    found: set[pathlib.Path] = set()
    paths: list[tuple[str, list[str]]] = []
    for m in GROUP.finditer(text):
        prefix = [p for p in m.group(2).split("::") if p]
        for item in re.split(r",", m.group(3)):
            item = item.strip().split(" as ")[0].split("::{")[0]
            names = [p for p in item.split("::") if p and p not in ("self", "*")]
            if names or item.strip() == "self":
                paths.append((m.group(1), prefix + names))
    for m in USE.finditer(text):
        paths.append((m.group(1), [p for p in m.group(2).split("::") if p]))
    for root, parts in paths:
        if root == "crate":
            target = parts
        else:
            # `super` is the parent of this file's module; each further `super` goes up one.
            parent = here[:-1]
            while parts and parts[0] == "super":
                parts = parts[1:]
                parent = parent[:-1]
            target = parent + parts
        resolved = resolve(src, target)
        if resolved is not None and resolved != file:
            found.add(resolved)
    return found


TS_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?\bfrom\s+["'](\.{1,2}/[^"']+)["']""", re.M | re.S)
TS_TREES = ["crates/server/web/src", "clients/typescript/src"]


def ts_references(file: pathlib.Path) -> set[pathlib.Path]:
    found = set()
    for m in TS_IMPORT.finditer(file.read_text()):
        base = (file.parent / m.group(1)).resolve()
        for candidate in (base, base.with_suffix(".ts"), base / "index.ts"):
            if candidate.is_file():
                found.add(candidate)
                break
    return found


def main() -> int:
    pairs = []
    for tree in TS_TREES:
        files = sorted(p.resolve() for p in (ROOT / tree).rglob("*.ts") if "/gen/" not in str(p))
        graph = {f: ts_references(f) for f in files}
        for a in files:
            for b in graph[a]:
                if a < b and a in graph.get(b, set()):
                    pairs.append((a.relative_to(ROOT), b.relative_to(ROOT)))
    for src in sorted(ROOT.glob("crates/*/src")):
        files = sorted(src.rglob("*.rs"))
        graph = {f: references(src, f) for f in files}
        for a in files:
            for b in graph[a]:
                if a < b and a in graph.get(b, set()):
                    pairs.append((a.relative_to(ROOT), b.relative_to(ROOT)))
    for a, b in pairs:
        print(f"{a} and {b} import each other")
    print(f"import cycles between two files: {len(pairs)}")
    return 1 if pairs else 0


if __name__ == "__main__":
    sys.exit(main())
