"""Text tables for the commands that tabulate many runs (`report`, `tune`, `study`): one renderer, Markdown that
also reads as plain text on a terminal."""


def render(head, rows, numeric=(), markdown=True):
    """`rows` (lists of cells) under `head`, columns padded; indices in `numeric` right-aligned. markdown=False:
    two-space separated with a dashed rule (for terminals only)."""
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def pad(i, v, w):
        return v.rjust(w) if i in numeric else v.ljust(w)

    if not markdown:
        def line(c):
            return "  ".join(pad(i, v, w) for i, (v, w) in enumerate(zip(c, widths))).rstrip()

        return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(c) for c in cells[1:]])

    def line(c):
        return "| " + " | ".join(pad(i, v, w) for i, (v, w) in enumerate(zip(c, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(c) for c in cells[1:]])
