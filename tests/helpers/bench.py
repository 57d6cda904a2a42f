"""Reading the benchmarks' printed tables back (tests/bench)."""
from __future__ import annotations

import re


def parse_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """{section title: {contender: [ms, ratio, img/s, GFLOP/s?, of peak?]}} from a printed section_table."""
    lines = text.splitlines()
    sections: dict[str, dict[str, list[str]]] = {}
    for i, line in enumerate(lines[:-2]):
        if lines[i + 1].startswith("contender"):
            rows = sections.setdefault(line.strip(), {})
            for row in lines[i + 3:]:
                if not row.strip() or row.startswith("("):
                    break
                name, *cells = re.split(r"\s{2,}", row.strip())
                rows[name] = " ".join(cells).split()
    return sections
