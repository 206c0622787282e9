"""``omnifuse pretrain CONFIG``: an encoder trained without labels, which ``train`` then starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.cli_options import DataDirOpt, SetOpt, console


def pretrain(
    config: Annotated[str, typer.Argument(help="Preset name or config .toml file")],
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The pretraining's run directory (default runs/<name>-pretrained); rerun to continue it",
        ),
    ] = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of the default run directory")] = Path(
        "runs"
    ),
    data_dir: DataDirOpt = None,
):
    """Pretrain a modality's encoder on the training and unlabelled samples (text: a language model; images:
    contrastive); a model starts from it with --set model.<kind>.init=RUN."""
    from omnifuse.config import load_config

    cfg = load_config(config, set_ or [])
    # imported once the config checks out: a mistake in it is reported without waiting for TensorFlow
    from omnifuse.pretrain.run import pretrain as run_pretraining

    run = run_pretraining(cfg, run_dir=out, runs_root=runs_root, data_dir=data_dir)
    import json

    kind = json.loads((run / "meta.json").read_text(encoding="utf-8"))["pretrain"]["kind"]
    console.print(f"[green]Pretrained.[/green] Run directory: [bold]{run}[/bold]")
    console.print(f"Next: omnifuse train {config} --set model.{kind}.init={run}")
