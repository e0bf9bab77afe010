"""Plain-text and markdown tables, and the number formats every report shares."""

from __future__ import annotations

from typing import Sequence

# Column alignment: "l" left, "r" right (numbers).
Align = Sequence[str]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Align | None = None) -> str:
    """Aligned columns separated by two spaces, a dashed rule under the header."""
    align = align or ["l"] * len(headers)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule.rstrip(), *(line(row) for row in rows)])


def render_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Align | None = None) -> str:
    """A GitHub-flavoured markdown table; right-aligned columns get ``---:``."""
    align = align or ["l"] * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(rule), *(line(row) for row in rows)])


def format_count(n: int) -> str:
    """138357544 -> '138,357,544'."""
    return f"{n:,}"


def format_macs(n: int) -> str:
    """Decimal (SI) prefixes, as papers quote operation counts: 15470264320 -> '15.47 G'."""
    for prefix, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {prefix}"
    return str(n)


def format_mib(n_bytes: int) -> str:
    """Binary mebibytes, as memory is allocated: 553430176 -> '527.79 MiB'."""
    return f"{n_bytes / 2**20:,.2f} MiB"


def format_shape(shape: Sequence[int] | None) -> str:
    """(1, 64, 112, 112) -> '1x64x112x112'; None (the module did not run) -> '-'."""
    return "-" if shape is None else "x".join(str(d) for d in shape)
