"""The README and the pages in docs/: every relative link and picture leads somewhere, and the pages read as pages.

A link is checked as GitHub shows it: the file must exist (relative to the
page the link is on), and a ``#anchor`` must be the anchor GitHub gives one
of the target page's headings. Links to other sites (``http``, ``https``,
``mailto``) are not followed. Text in code blocks and code spans is not
markdown, so a ``[::1]:8080`` or a ``# comment`` there is neither a link
nor a heading.
"""

import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
# The README is the way in: what the chat is, how to start it, where to read
# on. Anything longer belongs on a page in docs/, linked from its contents.
README_MAX_LINES = 300

FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
# A code span may wrap onto the next line, but never crosses a blank line.
CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)*?[^`])\1(?!`)", re.DOTALL)
# [text](target) and ![alt](target), an optional "title" after the target.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
ELSEWHERE = ("http://", "https://", "mailto:")


def doc_pages() -> "list[Path]":
    return [README, *sorted((PROJECT / "docs").glob("*.md"))]


def without_fences(text: str) -> str:
    """The text with fenced code blocks blanked out, every newline kept (so line numbers hold)."""
    lines, fence = [], None
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            lines.append("")
        elif fence is not None:
            # A fence closes with at least as many of the same character, alone on its line.
            closing = FENCE.match(line)
            if closing and closing.group(1).startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked out, every newline kept."""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase; punctuation and emoji dropped (not ``-`` or ``_``); spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> "set[str]":
    """Every heading's anchor on ``page``; a heading met again gets ``-1``, ``-2``… as on GitHub."""
    found, seen = set(), {}
    for line in without_fences(page.read_text(encoding="utf-8")).split("\n"):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> "list[tuple[int, str]]":
    """Each relative link and picture on ``page``: (line number, target)."""
    text = without_code(page.read_text(encoding="utf-8"))
    found = []
    for pattern in (LINK, HTML_IMAGE):
        for match in pattern.finditer(text):
            target = match.group(1)
            if target and not target.startswith(ELSEWHERE):
                found.append((text.count("\n", 0, match.start(1)) + 1, target))
    return sorted(found)


def broken(page: Path, target: str) -> "str | None":
    """Why ``target``, linked from ``page``, leads nowhere; None if it leads somewhere."""
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return "no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading with the anchor #{anchor} in {destination.name}"
    return None


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("What is TCP?", "what-is-tcp"),
        ("The TCP 3-way handshake", "the-tcp-3-way-handshake"),
        ("Join from a phone: the QR code", "join-from-a-phone-the-qr-code"),
        ("GitHub Codespaces: chatting from other devices", "github-codespaces-chatting-from-other-devices"),
        ("`--store` and `chat.db`", "--store-and-chatdb"),
        ("🛑 Stopping", "-stopping"),
        ("Who owns which thread", "who-owns-which-thread"),
        ("The [outbox](#the-outbox)", "the-outbox"),
        ("MAX_LINE_BYTES", "max_line_bytes"),
    ],
)
def test_a_heading_gets_the_anchor_github_gives_it(heading, anchor):
    assert slug(heading) == anchor


def test_a_heading_met_again_gets_a_number_and_code_is_neither_heading_nor_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Notes\n\n## Example\n\n```bash\n# not a heading [nor](a-link.md)\n```\n\n"
        "## Example\n\n### Example\n\nSee `[::1](8080)` and [the second](#example-1).\n",
        encoding="utf-8",
    )
    assert anchors(page) == {"notes", "example", "example-1", "example-2"}
    assert links(page) == [(13, "#example-1")]
    assert broken(page, "#example-2") is None
    assert broken(page, "#example-3") == "no heading with the anchor #example-3 in page.md"
    assert broken(page, "missing.md") == "no such file"


def test_a_link_may_span_lines_and_its_line_is_where_its_target_is(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Notes\n\nSee [a link\nover two lines](#notes), and ![a picture](picture.png).\n\nA lone ` is no code span.\n\n"
        "[Still a link](#notes)\n",
        encoding="utf-8",
    )
    assert links(page) == [(4, "#notes"), (4, "picture.png"), (8, "#notes")]
    assert broken(page, "picture.png") == "no such file"


def test_every_relative_link_and_picture_in_the_docs_leads_to_a_file_and_heading_that_exist():
    problems = [
        f"{page.relative_to(PROJECT)}:{line}: ({target}) {why}"
        for page in doc_pages()
        for line, target in links(page)
        if (why := broken(page, target)) is not None
    ]
    assert not problems, "Broken links:\n" + "\n".join(problems)


def test_the_readme_has_at_most_300_lines():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines; at most {README_MAX_LINES}: move the detail to docs/"


def test_the_readme_links_to_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    missing = [page.name for page in doc_pages()[1:] if page.resolve() not in linked]
    assert not missing, f"README.md links to no {', '.join(missing)}"


def test_every_docs_page_opens_with_a_title_then_a_paragraph_saying_what_it_teaches():
    problems = []
    for page in doc_pages()[1:]:
        lines = page.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].startswith("# "):
            problems.append(f"{page.name}: the first line is not a title (# ...)")
            continue
        opening = next((line for line in lines[1:] if line.strip()), "")
        if not opening or re.match(r"\s*(#|[-*+>|!<]|\d+[.)]\s|```|~~~)", opening):
            problems.append(f"{page.name}: after the title comes {opening!r}, not a paragraph of prose")
    assert not problems, "\n".join(problems)


def requirement_names(path: Path) -> "list[str]":
    """The package names a requirements file lists (and ``-r FILE`` as it is)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line if line.startswith("-r") else re.split(r"[<>=!~\[ ]", line)[0].lower() for line in lines if line]


def test_the_quick_start_installs_what_chatting_needs_and_the_test_tools_come_on_top():
    program = requirement_names(PROJECT / "requirements.txt")
    assert set(program) == {"colorama", "prompt_toolkit", "websockets", "segno", "redis"}
    development = requirement_names(PROJECT / "requirements-dev.txt")
    assert development[0] == "-r requirements.txt"
    assert set(development[1:]) == {"pytest", "pytest-xdist", "hypothesis", "pyte", "selenium"}
    readme = (PROJECT / "README.md").read_text()
    assert "pip install -r requirements-dev.txt && python -m pytest -q" in readme
    assert "-r requirements-dev.txt && python3 -m pytest -q" in (PROJECT / ".ci" / "run").read_text()  # CI runs it
