"""Checks that every relative link in README.md and docs/*.md resolves.

A link `[text](path)` or `[text](path#anchor)` must name a file or directory that exists,
relative to the Markdown file; `#anchor` must be a heading of the target Markdown file, as
GitHub spells heading anchors. External links (with a scheme) are not checked.

Usage: python3 tests/docs/check_links.py (from the repository root). Exits 1 listing every
broken link.
"""

import re
import sys
from pathlib import Path

LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text):
    """The text outside fenced code blocks and inline code spans."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen, found = {}, set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = anchor(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken(files):
    for file in files:
        for target in LINK.findall(prose(file.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            path, _, fragment = target.partition("#")
            dest = (file.parent / path).resolve() if path else file.resolve()
            if not dest.exists():
                yield f"{file}: {target}: {path} does not exist"
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                yield f"{file}: {target}: no heading #{fragment} in {dest.name}"


files = [Path("README.md")] + sorted(Path("docs").glob("*.md"))
problems = list(broken(files))
for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"  every relative link in {len(files)} Markdown files resolves")
