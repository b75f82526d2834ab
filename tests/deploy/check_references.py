"""Repository hygiene that the deploy and test tools depend on.

1. Every repository path that a file under deploy/ names (`deploy/...`, `tests/...`, `docs/...`,
   `crates/...`) exists, so a comment or a command in a manifest never points at a file
   that is not there.
2. Every Python requirement that tests and CI install is pinned to an exact version
   (`name==version`): tests/python/requirements.txt and the pip lines of tests/deploy/*.sh.

Usage: check_references.py (from the repository root). Exits 1 listing every problem.
"""

import re
import sys
from pathlib import Path

# A file name with an extension: `deploy/mobilesam` alone is a kubectl resource, not a path.
PATH = re.compile(r"(?<![\w./-])((?:deploy|tests|crates|docs)/[\w./-]*\.[A-Za-z]+)(?![\w/-])")
PIN = re.compile(r"^[A-Za-z0-9_.\[\]-]+==[\w.+-]+$")


def missing_paths():
    for file in sorted(Path("deploy").rglob("*")):
        if not file.is_file():
            continue
        text = file.read_text(errors="replace")
        for match in PATH.finditer(text):
            named = match.group(1)
            # A glob or a placeholder names no single file.
            if any(c in named for c in "*{}@$<>"):
                continue
            if not Path(named).exists():
                yield f"{file}: names {named}, which does not exist"


def unpinned_requirements():
    for line in Path("tests/python/requirements.txt").read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and not PIN.match(requirement):
            yield f"tests/python/requirements.txt: {requirement!r} is not pinned (name==version)"
    for script in sorted(Path("tests/deploy").glob("*.sh")):
        # The arguments of `pip install` up to the end of the (possibly continued) command.
        text = script.read_text().replace("\\\n", " ")
        for command in re.findall(r"pip\"? install ([^\n]*)", text):
            for word in command.split():
                if word.startswith("-") or word.startswith("$") or word.endswith(".txt"):
                    continue
                if not PIN.match(word):
                    yield f"{script}: pip requirement {word!r} is not pinned (name==version)"


problems = list(missing_paths()) + list(unpinned_requirements())
for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print("  every path named under deploy/ exists; every test requirement is pinned")
