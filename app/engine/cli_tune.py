"""`labelcut tune DATASET --engine local|dask`: a Parquet dataset tuned from statistics.

The table printed and the JSON of `--out` are those of `labelcut tune FILE` (the same
`TuningResult.to_dict`, plus model, rule and curves), so `labelcut push` stores either.
Every bad input (dataset, option, bundle, scheduler) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from labelcut.app.engine.base import Cancelled, DatasetError, Progress

#: What `--engine` takes: memory is today's whole-file path (`labelcut.app.cli.cmd_tune`).
CLI_ENGINES = ("memory", "local", "dask")
_NOT_OPTIONS = frozenset({"scores", "targets", "device", "return_curves"})


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """`--engine`, `--scheduler`, `--mode`, `--workers`, `--partition-rows`."""
    parser.add_argument(
        "--engine",
        choices=CLI_ENGINES,
        default=None,
        help="memory: read the file whole (the default for one local file); local: a "
        "Parquet dataset in this process, a partition at a time; dask: a Parquet dataset on "
        "Dask, a LocalCluster unless --scheduler (the default for a folder, glob or URL)",
    )
    parser.add_argument(
        "--scheduler", help="a Dask scheduler address (tcp://host:8786); --engine dask only"
    )
    parser.add_argument(
        "--mode",
        choices=("exact", "quantised"),
        default=None,
        help="exact (default): the thresholds of the in-memory tune; quantised: scores on a "
        "fixed 2**16-level grid first (one pass, memory O(labels x levels))",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="LocalCluster worker processes (default 2)"
    )
    parser.add_argument(
        "--partition-rows",
        dest="partition_rows",
        type=int,
        default=None,
        help="rows per partition at most (default: about 32 MB decoded; a row group is never "
        "split, small files share a partition)",
    )


def engine_of(args: argparse.Namespace) -> str:
    """The engine asked for, else memory for one local file and dask for anything else."""
    if args.engine is not None:
        return str(args.engine)
    data = str(args.data)
    if "://" not in data and (Path(data).is_file() or not _looks_like_dataset(data)):
        return "memory"
    return "dask"


def _looks_like_dataset(data: str) -> bool:
    return Path(data).is_dir() or any(c in data for c in "*?[")


def check_memory_flags(args: argparse.Namespace) -> str | None:
    """The message for a dataset-engine flag given to the memory engine, else None."""
    for flag, given in (
        ("--scheduler", args.scheduler is not None),
        ("--mode", args.mode is not None),
        ("--partition-rows", args.partition_rows is not None),
    ):
        if given:
            return f"{flag} applies to --engine local or dask, not to the in-memory tune."
    return None


def cmd_tune_dataset(args: argparse.Namespace, engine: str) -> int:
    """Run `labelcut tune DATASET` on the local or the Dask engine; the exit status."""
    from labelcut.app.cli import _format_table, _settings_from_flags
    from labelcut.app.tune_form import OptionError

    settings = _settings_from_flags(args, ("model_dir", "device"))
    try:
        report = _tune(args, engine, settings)
    except OptionError as exc:
        print(f"labelcut tune: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    except DatasetError as exc:
        print(f"labelcut tune: bad dataset: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # ConnectionError is an OSError
        print(f"labelcut tune: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("labelcut tune: interrupted", file=sys.stderr)
        return 130
    print(_format_table(report))
    if report.get("decision_rule", "threshold") != "threshold":
        k = f" (k={report['k']})" if report.get("k") is not None else ""
        print(f"decision rule for /predict: {report['decision_rule']}{k}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.out}")
    return 0


def _tune(args: argparse.Namespace, engine: str, settings: Any) -> dict[str, Any]:
    """The report `--out` writes (the printed table is made from it)."""
    from labelcut import tuning
    from labelcut.app.engine.dataset import open_dataset, read_model_spec
    from labelcut.app.engine.tune import tune_dataset
    from labelcut.app.tune_form import check_options, tune_keywords

    if engine == "local" and args.scheduler is not None:
        raise ValueError("--scheduler applies to --engine dask.")
    if args.calibration not in (None, "none"):
        raise ValueError(
            "--calibration is not available with --engine local or dask (a calibrator is fit "
            "on the rows themselves); tune a file with --engine memory for it."
        )
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}.")
    model_dir = None if settings.model_dir is None else str(settings.model_dir)
    model = None if model_dir is None else read_model_spec(model_dir)
    # The labels first (footers only): the options are checked against them before any work.
    labels = open_dataset(args.data, model=model).labels
    sent = {p.name: getattr(args, p.name) for p in tuning.TUNE_PARAMETERS}
    sent["calibration"] = args.calibration
    sent["calibration_tuning"] = args.calibration_tuning
    params = check_options(sent, activation="sigmoid", n_labels=len(labels))
    accepted = set(inspect.signature(tuning.tune_thresholds).parameters) - _NOT_OPTIONS
    kwargs = tune_keywords(params, accepted.__contains__)
    kwargs.update(objective=params.objective, label_names=labels)
    if args.out:  # the compact PR curves the page plots, as `labelcut tune FILE --out` has
        kwargs["return_curves"] = True
    with _Bar() as bar:
        result = tune_dataset(
            args.data,
            engine=engine,
            scheduler=args.scheduler,
            model_dir=model_dir,
            device=settings.device,
            mode=args.mode or "exact",
            tune_kwargs=kwargs,
            progress=bar.update,
            partition_rows=args.partition_rows,
            n_workers=args.workers,
        )
    report = result.to_dict(label_names=labels)
    # What `labelcut push` reads, as `labelcut tune FILE --out` writes it. The data's hash
    # would mean reading every byte on this machine: left out (push stores "unknown").
    report.update(
        model=None if model is None else {"name": model.name, "sha256": model.sha256},
        data_sha256=None,
        decision_rule=params.decision_rule,
        k=params.k,
    )
    if getattr(result, "curves", None) is not None:
        from labelcut.app.service import label_curves

        report["curves"] = label_curves(result, labels)
    return report


class _Bar:
    """A tqdm bar on stderr: partitions done in the current pass (a bar per pass)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._pass = 0

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, progress: Progress) -> None:
        from tqdm import tqdm

        if progress.pass_index != self._pass:
            if self._bar is not None:
                self._bar.close()
            self._pass = progress.pass_index
            self._bar = tqdm(
                total=progress.partitions,
                unit="partition",
                desc=f"pass {progress.pass_index}/{progress.passes}",
                file=sys.stderr,
            )
        self._bar.set_postfix(rows=progress.rows_done, refresh=False)
        self._bar.update(progress.partitions_done - self._bar.n)
