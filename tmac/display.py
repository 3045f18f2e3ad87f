"""Tables of results that show well everywhere: rich in a terminal, HTML in Jupyter, markdown
in docs. Benchmarks and tuning return a ``Report``; ``progress`` gives a bar that stays quiet
when output is not a terminal (CI logs, pipes)."""

import html
from dataclasses import dataclass, field


@dataclass
class Report:
    """Rows of results. ``columns`` is a list of (key, header, format string); rows are dicts.
    Columns no row has are left out; a key missing from one row shows as "-"."""

    title: str
    all_columns: list
    rows: list = field(default_factory=list)

    @property
    def columns(self):
        return [c for c in self.all_columns if any(c[0] in r for r in self.rows)]

    def cells(self, row):
        return [fmt.format(row[key]) if row.get(key) is not None else "-"
                for key, _, fmt in self.columns]

    def to_markdown(self):
        lines = ["| " + " | ".join(h for _, h, _ in self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self.cells(r)) + " |" for r in self.rows]
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=self.title)
        for _, header, _ in self.columns:
            table.add_column(header, justify="right")
        for row in self.rows:
            table.add_row(*self.cells(row))
        return table

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self.cells(r)) + "</tr>"
                       for r in self.rows)
        return (f"<table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def progress(description, total):
    """A rich progress bar on stderr for ``total`` steps; disabled when stderr is not a terminal.

    Use as ``with progress("tuning", n) as advance: ... advance()``.
    """
    from contextlib import contextmanager

    from rich.console import Console
    from rich.progress import Progress

    @contextmanager
    def bar():
        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as p:
            task = p.add_task(description, total=total)
            yield lambda: p.advance(task)

    return bar()
