"""`labelcut serve | tune | push | train | export`: the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from labelcut.app.config import Settings


def _settings_from_flags(args: argparse.Namespace, names: tuple[str, ...]) -> Settings:
    # Flags given on the command line win over LABELCUT_* variables.
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from labelcut.app.limits import server_options
    from labelcut.app.main import create_app

    settings = _settings_from_flags(
        args, ("model_dir", "host", "port", "device", "data_dir", "log_level")
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_error=stop, freeze_gc=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        **server_options(settings),
    )
    server = uvicorn.Server(config)
    server.run()
    service = getattr(app.state, "service", None)
    if service is not None and service.load_error:
        print(f"labelcut: could not load the model: {service.load_error}", file=sys.stderr)
        return 1
    return 0


def _interval(pair: list[float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.3f}-{pair[1]:.3f}"


def _format_table(report: dict[str, Any]) -> str:
    """The per-label table and the summary lines: in-sample figures, marked as such, and
    (when the tune reports them) what to expect on new data (issue 20)."""
    summary = report["summary"]
    expected = "expected" in summary["macro_f1"]
    header = f"{'label':<20} {'threshold':>9} {'interval':>11} {'prec':>6} {'recall':>6} "
    header += f"{'f1':>6} {'f1@0.5':>6} "
    header += f"{'new f1':>6} " if expected else ""
    header += f"{'support':>7}  {'strategy':<9} status"
    lines = [header, "-" * len(header)]
    for row in report["per_label"]:
        flag = " (unstable)" if row.get("unstable") else ""
        line = (
            f"{row['label'][:20]:<20} {row['threshold']:>9.4f} "
            f"{_interval(row.get('threshold_interval')):>11} {row['precision']:>6.3f} "
            f"{row['recall']:>6.3f} {row['f1']:>6.3f} {row['at_default']['f1']:>6.3f} "
        )
        if expected:
            found = row.get("expected_f1")
            line += f"{found:>6.3f} " if found is not None else f"{'-':>6} "
        line += f"{row['support']:>7d}  {row.get('strategy') or '-':<9} {row['status']}{flag}"
        lines.append(line)
    lines.append("")
    if expected:
        lines.append(
            "prec, recall, f1, f1@0.5: in sample (the validation rows tuned on); new f1: "
            "expected on new data (cross-fitted, .632+ blend; '-': too few positives for folds)"
        )
    for message in (report.get("diagnosis") or {}).get("messages", []):
        lines.append(f"diagnosis: {message}")
    for name in ("macro_f1", "micro_f1"):
        pair = summary[name]
        line = f"{name}: tuned {pair['tuned']:.4f} vs 0.5 {pair['default']:.4f} in sample"
        if expected and pair.get("expected") is not None:
            low, high = pair["expected_interval"]
            line += f"; expected on new data {pair['expected']:.4f} (90%: {low:.4f}-{high:.4f})"
        elif expected:
            line += f"; expected on new data: none ({pair.get('expected_reason') or 'no estimate'})"
        lines.append(line)
    if summary.get("adaptive"):
        lines.append(f"adaptive kept: {summary['adaptive']['why']}")
    return "\n".join(lines)


def _format_multiclass(report: dict[str, Any]) -> str:
    """A softmax set's figures: the confidence threshold, coverage and accuracy, per class."""
    found = report["multiclass"]
    header = f"{'class':<20} {'precision':>9} {'recall':>6} {'support':>7} {'predicted':>9}"
    lines = [header, "-" * len(header)]
    for row in found["per_class"]:
        lines.append(
            f"{row['label'][:20]:<20} {row['precision']:>9.3f} {row['recall']:>6.3f} "
            f"{row['support']:>7d} {row['predicted']:>9d}"
        )
    lines += [
        "",
        f"confidence threshold {found['threshold']:.6g} ({found['objective']}, target "
        f"{found['params']['target']:g}, status {found['status']})",
        f"coverage {found['coverage']:.4f} ({found['answered']} of {found['n_samples']} rows "
        f"answered); accuracy of answered rows {found['accuracy']:.4f}; "
        f"overall (argmax) accuracy {found['overall_accuracy']:.4f}",
    ]
    return "\n".join(lines)


def cmd_tune(args: argparse.Namespace) -> int:
    from labelcut.app.engine.cli_tune import check_memory_flags, cmd_tune_dataset, engine_of

    engine = engine_of(args)
    if engine != "memory":  # a Parquet dataset, from mergeable statistics (issue 17)
        return cmd_tune_dataset(args, engine)
    problem = check_memory_flags(args)
    if problem is not None:
        print(f"labelcut tune: {problem}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from labelcut.app.service import sha256_of_file, tune_data
    from labelcut.app.tune_form import OptionError, check_options
    from labelcut.app.uploads import InputSpec, UploadError, detect_format, read_validation_file
    from labelcut.models import load_model
    from labelcut.tuning import TUNE_PARAMETERS

    settings = _settings_from_flags(args, ("model_dir", "device"))
    path = Path(args.data)
    try:
        model = load_model(settings.model_dir, device=settings.device)
        sent = {p.name: getattr(args, p.name) for p in TUNE_PARAMETERS}
        sent["calibration"] = args.calibration
        sent["calibration_tuning"] = args.calibration_tuning
        activation = getattr(model, "activation", "sigmoid")
        params = check_options(sent, activation=activation, n_labels=len(model.labels))
        spec = InputSpec(list(model.labels), tuple(model.input_shape), model.feature_names)
        fmt = detect_format(path.name, None)
        with path.open("rb") as fh:
            data_sha256 = sha256_of_file(fh)
            data = read_validation_file(fh, fmt, spec, max_data_bytes=settings.max_data_bytes)
        with tqdm(total=data.n_samples, unit="rows", desc="scoring", file=sys.stderr) as bar:
            tuned = tune_data(
                model,
                data,
                params,
                device=settings.device,
                with_curves=bool(args.out),
                progress=bar.update,
            )
    except OptionError as exc:
        print(f"labelcut tune: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    except (OSError, UploadError, ValueError) as exc:
        print(f"labelcut tune: {exc}", file=sys.stderr)
        return 2
    report = dict(tuned.report)
    if "multiclass" in report:
        print(_format_multiclass(report))
    else:
        print(_format_table(report))
    if activation != "softmax" and params.decision_rule != "threshold":
        k = f" (k={params.k})" if params.k is not None else ""
        print(f"decision rule for /predict: {params.decision_rule}{k}")
    if args.out:
        # What `labelcut push` needs to store it as a set: the model it was tuned for,
        # the data's hash, the /predict rule, and the curves the page plots.
        report.update(
            model={"name": model.name, "sha256": model.sha256},
            data_sha256=data_sha256,
            decision_rule=params.decision_rule,
            k=params.k,
        )
        if tuned.curves is not None:
            report["curves"] = tuned.curves
        if "calibration" in tuned.params:  # the calibrator the thresholds apply to
            report["calibration"] = {**tuned.report["calibration"], **tuned.params["calibration"]}
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from labelcut.app.client import Client, LabelcutError

    try:
        report = json.loads(Path(args.report).read_text())
    except (OSError, ValueError) as exc:
        print(f"labelcut push: cannot read {args.report}: {exc}", file=sys.stderr)
        return 2
    admin_key = args.admin_key or os.environ.get("LABELCUT_ADMIN_KEY") or None
    try:
        with Client(args.url, admin_key=admin_key, timeout=args.timeout) as client:
            stored = client.push(report, activate=args.activate)
    except LabelcutError as exc:
        print(f"labelcut push: {exc}", file=sys.stderr)
        return 1
    info = stored["threshold_set"]
    state = "active" if info["active"] else "not active"
    print(f"stored threshold set {info['id']} on {args.url} ({state})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from labelcut.models import DEFAULT_MODEL_DIR, train_default_model

    out = Path(args.out) if args.out else DEFAULT_MODEL_DIR
    train_default_model(out, seed=args.seed)  # prints train/test F1 at 0.5
    return 0


def cmd_export(argv: list[str]) -> int:
    from labelcut.models.export import main as export_main

    return export_main(argv)


def _version() -> str:
    from labelcut import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelcut", description="Serve multi-label classifiers with tuned thresholds."
    )
    parser.add_argument("--version", action="version", version=f"labelcut {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the model over HTTP")
    serve.add_argument("--model", dest="model_dir", help="model bundle directory")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    serve.add_argument("--data-dir", dest="data_dir", help="threshold store directory")
    serve.add_argument("--log-level", dest="log_level", help="debug | info | warning | error")
    serve.set_defaults(func=cmd_serve)

    tune = sub.add_parser("tune", help="tune thresholds offline on a validation file")
    tune.add_argument(
        "data",
        help="validation file (.npz, .csv or .parquet), or a Parquet dataset (folder, glob "
        "or fsspec URL) for --engine local or dask",
    )
    tune.add_argument("--model", dest="model_dir", help="model bundle directory")
    tune.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    # One flag per tuning option, from tuning's parameter table (issue 13).
    from labelcut.app.tune_form import add_tune_flags

    add_tune_flags(tune)
    from labelcut.app.engine.cli_tune import add_engine_flags

    add_engine_flags(tune)
    tune.add_argument("--out", help="write the full result as JSON to this file")
    tune.set_defaults(func=cmd_tune)

    push = sub.add_parser("push", help="store a `labelcut tune --out` result on a server")
    push.add_argument("report", help="the JSON file `labelcut tune --out` wrote")
    push.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    push.add_argument(
        "--admin-key",
        dest="admin_key",
        help="the server's admin key (default: $LABELCUT_ADMIN_KEY; prefer it, since "
        "command lines are visible to other users)",
    )
    push.add_argument("--activate", action="store_true", help="make the stored set active")
    push.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    push.set_defaults(func=cmd_push)

    train = sub.add_parser("train", help="rebuild the bundled yeast model")
    train.add_argument("--out", help="bundle directory (default: the bundled model's)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=cmd_train)

    # `export` hands its whole argument list to models.export (see main()).
    sub.add_parser(
        "export",
        help="convert a trusted PyTorch checkpoint into a model bundle "
        "(labelcut export --help for its options)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return cmd_export(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
