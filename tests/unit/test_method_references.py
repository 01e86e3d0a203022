"""Every section reference to the method page names a section that exists.

The code, the docs and the tests cite the specification by section, as in
``docs/method.md §7``; the docs link it, as in
``[method.md §7](method.md#7-one-forward-one-backward)``. A renumbered page, a reference to
a section that was never written or a citation of a document outside the repository would
send a reader nowhere; these tests find each one and name the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METHOD_PAGE = ROOT / "docs" / "method.md"

# Folders of the repository whose text files may cite the method page; build outputs and
# virtual environments are not the project's text.
SEARCHED = (
    "README.md",
    "pyproject.toml",
    "dexar_core",
    "dexar_plugins",
    "adapters",
    "tests",
    "docs",
    "benchmarks",
)
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".rst", ".cfg", ".ini", ".yaml", ".yml"}
SKIPPED_PARTS = {"build", "dist", "__pycache__", ".venv"}

SECTION_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
# "method.md §7", "method.md §3-6", "method.md §2–§7", across a line break too; the docs'
# link form "[method.md §7](method.md#7-one-forward-one-backward)" carries an anchor.
REFERENCE = re.compile(
    r"method\.md\s+\u00a7(?P<first>\d+)(?:\s*[-–]\s*\u00a7?(?P<last>\d+))?"
    r"(?:\]\(method\.md#(?P<anchor>[^)\s]+)\))?"
)
SECTION_SIGN = re.compile(r"\u00a7")
# The first specification's file name, built so this module does not cite it itself.
FIRST_SPEC = re.compile(r"METHOD\.md")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped)."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def method_sections() -> dict[int, str]:
    """The numbered sections of docs/method.md: number -> heading ("7. One forward, ...")."""
    headings = SECTION_HEADING.findall(METHOD_PAGE.read_text())
    return {int(n): f"{n}. {title}" for n, title in headings}


def text_files() -> list[Path]:
    """Every text file of the repository's own folders, docs/method.md included."""
    files: list[Path] = []
    for name in SEARCHED:
        top = ROOT / name
        candidates = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in candidates:
            relative = path.relative_to(ROOT).parts
            if (
                path.is_file()
                and path.suffix in TEXT_SUFFIXES
                and not SKIPPED_PARTS.intersection(relative)
                and not any(part.startswith(".") for part in relative)
            ):
                files.append(path)
    return files


def line_of(text: str, offset: int) -> int:
    """The 1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def test_method_page_sections_are_numbered_one_to_n():
    numbers = [int(n) for n, _ in SECTION_HEADING.findall(METHOD_PAGE.read_text())]
    assert numbers, "docs/method.md has no '## N. Title' section"
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_every_method_reference_names_an_existing_section():
    sections = method_sections()
    wrong = []
    count = 0
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in REFERENCE.finditer(text):
            count += 1
            where = f"{path.relative_to(ROOT)}:{line_of(text, match.start())}"
            first = int(match["first"])
            last = int(match["last"] or first)
            missing = [n for n in range(first, last + 1) if n not in sections]
            if missing or last < first:
                wrong.append(f"{where}: {match[0]!r} (sections: {sorted(sections)})")
            elif match["anchor"] and match["anchor"] != github_anchor(sections[first]):
                expected = github_anchor(sections[first])
                wrong.append(f"{where}: anchor #{match['anchor']}, expected #{expected}")
    assert count > 20, f"only {count} references found: is the pattern still right?"
    assert not wrong, "\n".join(wrong)


def test_method_page_cites_only_its_own_sections():
    sections = method_sections()
    text = METHOD_PAGE.read_text()
    wrong = [
        f"docs/method.md:{line_of(text, m.start())}: {m[0]}"
        for m in re.finditer(r"\u00a7(\d+)", text)
        if int(m[1]) not in sections
    ]
    assert not wrong, "\n".join(wrong)


def test_every_section_sign_belongs_to_a_method_reference():
    """A section sign anywhere else cites something no reader can find (another spec)."""
    stray = []
    for path in text_files():
        if path == METHOD_PAGE:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        covered = {i for m in REFERENCE.finditer(text) for i in range(m.start(), m.end())}
        stray += [
            f"{path.relative_to(ROOT)}:{line_of(text, m.start())}"
            for m in SECTION_SIGN.finditer(text)
            if m.start() not in covered
        ]
    assert not stray, "\n".join(stray)


def test_nothing_cites_the_first_spec_outside_the_method_page():
    citations = []
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [line_of(text, m.start()) for m in FIRST_SPEC.finditer(text)]
        # docs/method.md says once where it came from; nothing else may send a reader to
        # a file that is not in the repository.
        if path == METHOD_PAGE:
            assert len(lines) == 1, f"docs/method.md names its origin on lines {lines}"
        else:
            citations += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert not citations, "\n".join(citations)
