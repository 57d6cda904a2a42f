"""The examples in README.md and docs/ run, and docs/models.md is what `resbone list --markdown` prints.

Every ```python block of a page runs, in order, in one namespace per page, in a temporary directory, so
that a snippet that stops working fails the suite (issue 22: examples that cannot rot). A block right after
a line `<!-- not run: REASON -->` is skipped (a download, a GPU); the reason must be given.
test_a_broken_example_fails shows that the runner does fail: it runs a copy of a page with one line broken.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block that is not marked `<!-- not run: REASON -->`."""
    blocks, lines, i = [], text.splitlines(), 0
    previous = ""  # the last non-blank line before the fence
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```python"):
            start, i = i + 1, i + 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                i += 1
            if not NOT_RUN.search(previous):
                blocks.append((start + 1, "\n".join(lines[start:i])))
        elif line.strip():
            previous = line
        i += 1
    return blocks


def run_page(path: Path) -> int:
    """Run the page's blocks in order in one namespace; a failure names the page and the block's line."""
    namespace: dict = {"__name__": f"docs:{path.name}"}
    blocks = python_blocks(path.read_text())
    for line, code in blocks:
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{path.name}, the python block at line {line} failed: "
                                 f"{type(error).__name__}: {error}") from error
    return len(blocks)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_examples_of_each_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an example never fills the user's cache
    run_page(page)


def test_every_not_run_mark_gives_a_reason():
    for page in PAGES:
        for mark in re.findall(r"<!--\s*not run\b.*?-->", page.read_text()):
            assert NOT_RUN.search(mark), f"{page.name}: {mark!r} gives no reason"


def test_a_broken_example_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "broken.md"
    good = "```python\nx = 1 + 1\n```\n"
    page.write_text(good + "text\n" + good.replace("1 + 1", "x + undefined_name"))
    with pytest.raises(AssertionError, match=r"broken.md, the python block at line 6 failed: NameError"):
        run_page(page)
    page.write_text(good + "<!-- not run: shows a failure -->\n" + good.replace("1 + 1", "undefined_name"))
    assert run_page(page) == 1


def test_the_docs_pages_readme_links_exist():
    for target in re.findall(r"\]\((docs/[^)#]+)", (REPO / "README.md").read_text()):
        assert (REPO / target).is_file(), f"README.md links {target}, which does not exist"


def test_the_models_page_is_what_resbone_list_markdown_prints():
    from resbone.analysis.summary import model_table_markdown

    page = (REPO / "docs" / "models.md").read_text()
    table = model_table_markdown()
    assert table in page, "docs/models.md is stale: regenerate its table with `resbone list --markdown`"
