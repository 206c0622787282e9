"""``omnifuse bench``, ``serve``, ``export`` and ``launch``: the command line beyond training and predicting.

Each checks its arguments before importing TensorFlow (through the module doing the work)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from omnifuse.cli_options import CalibrationOpt, DataDirOpt, SetOpt, check_run, console
from omnifuse.errors import OmnifuseError, did_you_mean


def bench(
    name: Annotated[
        str,
        typer.Argument(
            help="A preset, a config .toml, a suite (omnifuse/bench/suites.toml), SUITE:LABEL,LABEL, 'serve', 'reliability' or "
            "'label-page' (--run RUN_DIR), or 'report' (regenerate RESULTS.md and the README's table from --results)"
        ),
    ],
    seeds: Annotated[int, typer.Option(help="Runs with train.seed = 0..N-1, each in a fresh process")] = 1,
    first_seed: Annotated[
        int, typer.Option(help="Start the seeds here (add seeds to a benchmark: --seeds 2 --first-seed 1)")
    ] = 0,
    compare: Annotated[
        str | None,
        typer.Option(
            help="Reference run alternating with NAME's: a script of benchmarks/reference/ (cifar10_cnn, "
            "imdb_lstm, resnet_torch, airbench94), a .py file, a preset, a suite or SUITE:LABEL"
        ),
    ] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    results: Annotated[
        Path, typer.Option(help="Folder of the JSON records; the table is rebuilt in its parent's RESULTS.md")
    ] = Path("benchmarks/results"),
    thresholds: Annotated[
        str, typer.Option(help="Test accuracies whose time to reach is recorded, comma-separated")
    ] = "0.80,0.85,0.88,0.90,0.92,0.93,0.94",
    ref_epochs: Annotated[
        float | None,
        typer.Option(
            help="--epochs for a reference script (default: the script's own; airbench94 takes fractions)"
        ),
    ] = None,
    ref_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="An extra argument for a reference script, repeatable (--ref-arg=--channels-last); the "
            "reference's label names them"
        ),
    ] = None,
    run: Annotated[
        Path | None, typer.Option(help="serve: the run to serve (--set requests=100 ... set its options)")
    ] = None,
    test_every: Annotated[
        int,
        typer.Option(
            help="Score omnifuse's runs on the test set after every N epochs and the last (0: the last only, which "
            "saves the per-epoch evaluation's wall time; training times are the same either way)"
        ),
    ] = 1,
):
    """Benchmark NAME over seeds (fresh process per run): JSON records + the table in RESULTS.md regenerated."""
    from omnifuse.bench import parse_thresholds, run_bench, run_serve, update_results

    if name == "report":
        typer.echo(f"[bench] tables regenerated in {update_results(results)}")
        return
    if name == "serve":
        run_serve(run, list(set_ or []), results, echo=typer.echo)
        return
    if name == "label-page":  # the labelling page's click latency and kill -9 survival
        from omnifuse.bench.labelpage import bench as label_page

        label_page(run, list(set_ or []), results, echo=typer.echo)
        return
    if name == "reliability":  # the serving bench's load run with bad requests, beside one without
        run_serve(run, [*RELIABILITY_LOAD, *(set_ or [])], results, echo=typer.echo)
        return
    run_bench(
        name,
        seeds=seeds,
        compare=compare,
        overrides=list(set_ or []),
        data_dir=data_dir,
        results=results,
        thresholds=parse_thresholds(thresholds),
        ref_epochs=ref_epochs,
        ref_args=list(ref_arg or []),
        echo=typer.echo,
        first_seed=first_seed,
        test_every=test_every,
    )


EXPORT_FORMATS = ("keras", "savedmodel", "onnx")

# `omnifuse bench reliability --run RUN`: 64 clients for 60 s, first valid requests only, then 10% bad ones of every
# kind that applies to the model (each phase on a fresh server); later --set items override these
RELIABILITY_LOAD = [
    "bad_fraction=0.1",
    "concurrency=64",
    "duration=60",
    "batch_sizes=[]",
    "instances=0",
]


def serve(
    run_dir: Path,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most samples run through the model at once")] = 64,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits for more requests (0: takes what is waiting)")
    ] = 0.0,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body accepted, in MiB")] = 10.0,
    max_image_mpx: Annotated[
        float,
        typer.Option(help="Largest image accepted, in megapixels (width x height, read from its header)"),
    ] = 16.0,
    max_audio_s: Annotated[float, typer.Option(help="Longest recording accepted, in seconds")] = 600.0,
    max_text_chars: Annotated[int, typer.Option(help="Longest text accepted, in characters")] = 100_000,
    max_decoders: Annotated[
        int | None,
        typer.Option(help="Most requests decoded at once (bounds memory; default: CPUs, at most 4)"),
    ] = None,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take to arrive (408 after it)")
    ] = 30.0,
    max_connections: Annotated[
        int, typer.Option(help="Most open connections and requests at once (503 beyond it)")
    ] = 1000,
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32, bfloat16 (faster on CPUs with AMX/AVX512-BF16; probabilities within ~0.02), or auto "
            "(bfloat16 where the hardware has it natively and it measured faster); default: the precision the run was trained in"
        ),
    ] = None,
    label_queue: Annotated[
        Path | None, typer.Option(help="A queue CSV (omnifuse label next) to label in the browser at /label")
    ] = None,
    labels_out: Annotated[
        Path, typer.Option(help="With --label-queue: the CSV each answer is appended to (a valid --data)")
    ] = Path("labels.csv"),
    calibrated: CalibrationOpt = True,
):
    """Serve a run over HTTP: the web page at /, POST /predict, GET /metadata, GET /health, docs at /docs."""
    from omnifuse.limits import InputLimits

    limits = InputLimits(int(max_image_mpx * 1e6), max_audio_s, max_text_chars)
    for name, value in (
        ("--max-decoders", 1 if max_decoders is None else max_decoders),
        ("--body-timeout", body_timeout),
    ):
        if value <= 0:
            raise OmnifuseError(f"Expected {name} to be positive. Received: {value}")
    if label_queue is not None and not label_queue.exists():
        raise OmnifuseError(
            f"Expected --label-queue to be a CSV file. Received: '{label_queue}', which does not exist"
        )
    check_run(run_dir)
    import uvicorn

    from omnifuse.serving import create_app

    web = create_app(
        run_dir,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        precision=precision,
        limits=limits,
        max_decoders=max_decoders,
        body_timeout_s=body_timeout,
        label_queue=label_queue,
        labels_out=labels_out,
        calibrated=calibrated,
    )
    if label_queue is not None:
        console.print(f"Labelling page: http://{host}:{port}/label  (answers go to {labels_out})")
    console.print(f"Serving [bold]{run_dir}[/bold] at http://{host}:{port}/  (API docs: /docs; Ctrl+C stops)")
    # idle keep-alive connections are closed after 5 s, and connections beyond max_connections get 503: a crowd of
    # slow or idle clients cannot hold every file descriptor (the body deadline handles the ones mid-request)
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=5,
        limit_concurrency=max_connections,
    )


def export_model(
    run_dir: Path,
    format_: Annotated[str, typer.Option("--format", help="keras | savedmodel | onnx")] = "keras",
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_DIR/export/FORMAT)")] = None,
    calibrated: CalibrationOpt = True,
):
    """Export a run's model as a portable artifact, checked against the model, with MODEL_CARD.md beside it."""
    check_run(run_dir)
    if format_ not in EXPORT_FORMATS:  # omnifuse.export.FORMATS, checked before it imports TensorFlow
        raise OmnifuseError(
            f"Expected --format keras, savedmodel, onnx.{did_you_mean(format_, EXPORT_FORMATS)} Received: {format_!r}"
        )
    from omnifuse.export import export

    result = export(run_dir, format_, out, calibrated=calibrated)
    console.print(
        f"[green]Exported.[/green] {result['artifact']} (max |Δp| {result['max_abs_diff']:.2e} "
        f"≤ {result['tolerance']:g} on {result['probe_samples']} probe samples); card: {result['card']}"
    )


def launch(
    config: Annotated[str, typer.Argument(help="Preset name or config .toml file")],
    workers: Annotated[int, typer.Option(help="Number of worker processes to start on 127.0.0.1")] = 2,
    set_: SetOpt = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="The run directory (default a new runs/<name>); an unfinished one is continued"),
    ] = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of new run directories")] = Path("runs"),
    data_dir: DataDirOpt = None,
    max_restarts: Annotated[
        int,
        typer.Option(help="Restart all workers this many times when one fails (they resume from backups)"),
    ] = 0,
):
    """Train with N local worker processes (train.distribution = multi_worker on 127.0.0.1), to try it out."""
    from omnifuse.distributed import WorkerFailed
    from omnifuse.distributed import launch as run_launch

    try:
        out = run_launch(
            config,
            workers,
            set_ or [],
            run_dir=run_dir,
            runs_root=runs_root,
            data_dir=data_dir,
            max_restarts=max_restarts,
            echo=typer.echo,
        )
    except WorkerFailed as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(exc.code if exc.code > 0 else 1)
    console.print(f"[green]Trained.[/green] Run directory: [bold]{out}[/bold]")
    console.print(f"Next: omnifuse evaluate {out}")
