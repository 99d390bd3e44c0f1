"""`ferbench <verb>`: what every workflow rule calls, and what users call by hand.

Each verb parses its arguments here and hands them to the module that owns the work, so the
interface is in one place and the modules stay importable without the command line.
Any FerbenchError, and a read-only folder or a full disk, becomes one line on stderr and exit
status 2; SIGTERM (scancel) unwinds like an error (temporary files removed), exit status 143.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from ferbench.errors import FerbenchError


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferbench", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("synthesize", help="write procedural face sequences in real dataset layouts")
    p.add_argument("--out", required=True, help="folder that receives one sub-folder per layout")
    p.add_argument("--layouts", default="ckplus,oulu,affectnet,afewva,fer2013",
                   help="comma-separated layouts to write (default: %(default)s)")
    p.add_argument("--subjects", type=int, default=24, help="identities (default: %(default)s)")
    p.add_argument("--frames", type=int, default=8, help="frames per sequence, neutral to apex")
    p.add_argument("--size", type=int, default=96, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_lazy("ferbench.synthetic:main"))

    p = verbs.add_parser("inspect", help="what a dataset root holds, under its default protocol")
    p.add_argument("dataset")
    p.add_argument("root")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--strict", action="store_true", help="an unreadable sample is an error")
    p.add_argument("--verify", action="store_true", help="decode every image (slow on large sets)")
    p.add_argument("--fold-file", help="CSV subject,fold overriding the sorted-ID fold rule")
    p.set_defaults(func=_lazy("ferbench.data.inspection:main"))

    p = verbs.add_parser("prepare", help="read a dataset and cache its aligned faces once")
    p.add_argument("dataset")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="cache folder for this dataset, e.g. cache/ckplus")
    p.add_argument("--size", type=int, nargs="+", default=[64], help="face side(s) in pixels")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3)
    p.add_argument("--margin", type=float, default=0.2, help="context around the face box")
    p.add_argument("--crop-per", choices=("auto", "frame", "sequence"), default="auto",
                   help="one crop box per frame, or per sequence from the union of its landmark "
                        "boxes (auto: per sequence for fixed-camera datasets such as CK+, MMI)")
    p.add_argument("--strict", action="store_true",
                   help="an unreadable sample, or splits that differ far beyond sampling, is an error")
    p.add_argument("--split-check", choices=("warn", "error", "off"), default="warn",
                   help="compare the official splits' image statistics before caching: a finding "
                        "is a warning, an error, or the check is skipped (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_lazy("ferbench.data.prepare:main"))

    p = verbs.add_parser("folds", help="assign folds/splits from a cached sample table")
    p.add_argument("dataset")
    p.add_argument("--cache", required=True, help="the dataset's cache folder")
    p.add_argument("--out", required=True, help="folds parquet to write")
    p.add_argument("--protocol", default=None, help="protocol name (default: the dataset's)")
    p.add_argument("--fold-file", help="CSV subject,fold overriding the sorted-ID fold rule")
    p.set_defaults(func=_lazy("ferbench.data.protocols:main"))

    for verb, target, text in (
        ("pretrain", "ferbench.train.jobs:main_pretrain", "a method's self-supervised/sequence stage"),
        ("train", "ferbench.train.jobs:main_train", "one job: dataset x method x fold x seed"),
    ):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--config", required=True, help="params.yaml (already validated)")
        p.add_argument("--dataset", required=True)
        p.add_argument("--method", required=True)
        p.add_argument("--fold", type=int, required=True)
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--cache", required=True, help="the dataset's cache folder")
        p.add_argument("--folds", required=True, help="the dataset's folds parquet")
        p.add_argument("--out", required=True, help="run folder for the artefacts")
        p.add_argument("--pretrained", help="checkpoint of the pretraining stage")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--no-progress", action="store_true")
        if verb == "pretrain":
            p.add_argument("--all-subjects", action="store_true",
                           help="pretrain on every subject (one encoder serving all folds of "
                                "another target dataset) instead of the fold's training subjects")
        p.set_defaults(func=_lazy(target))

    p = verbs.add_parser("aggregate", help="paper-style tables and figures from all runs")
    p.add_argument("--runs", required=True, help="results/runs")
    p.add_argument("--config", required=True, help="params.yaml")
    p.add_argument("--tables", required=True, help="output folder for the tables")
    p.add_argument("--figures", required=True, help="output folder for the figures")
    p.add_argument("--summary", required=True, help="summary JSON for DVC metrics")
    p.add_argument("--plots", required=True, help="per-fold scores CSV for DVC plots")
    p.add_argument("--report", help="also write one HTML page of every table and figure (the "
                                    "figures by relative path: e.g. results/figures/index.html)")
    p.set_defaults(func=_lazy("ferbench.report.aggregate:main"))

    p = verbs.add_parser("compare", help="metric differences (and paired tests) between two "
                                         "results folders")
    p.add_argument("run_a", metavar="RUN_A", help="results folder (or its runs/ folder)")
    p.add_argument("run_b", metavar="RUN_B", help="results folder (or its runs/ folder)")
    p.add_argument("--metrics", help="comma-separated metrics to compare (default: all)")
    p.add_argument("--csv", help="also write every row to this CSV file")
    p.set_defaults(func=_lazy("ferbench.report.compare:main"))

    p = verbs.add_parser("doctor", help="verify the fingerprints and completion markers of caches and results")
    p.add_argument("paths", nargs="+", metavar="CACHE_OR_RESULTS_DIR")
    p.add_argument("--deep", action="store_true",
                   help="re-hash every pixel of every face array (default: sampled blocks, the "
                        "whole array only when its file time changed)")
    p.set_defaults(func=_lazy("ferbench.doctor:main"))

    p = verbs.add_parser("settings", help="every setting one job uses, each with the layer "
                                          "of the config that set it")
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("run", metavar="RUN", help="a run name under methods:")
    p.add_argument("--stage", choices=("train", "pretrain"), default="train")
    p.add_argument("--budget", help="budget to resolve (default: the config's `budget`)")
    p.add_argument("--config", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--configfile", nargs="+", metavar="F",
                   help="files given to snakemake --configfile, merged in order over --config")
    p.add_argument("--json", action="store_true", help="the settings.json object instead of text")
    p.set_defaults(func=_lazy("ferbench.config:settings_main"))

    p = verbs.add_parser("validate-config", help="check params.yaml (and --configfile overrides) "
                                                 "as the workflow does, before any job runs")
    p.add_argument("config", nargs="+", metavar="CONFIG",
                   help="params.yaml, then any files given to snakemake --configfile, merged in "
                        "order as Snakemake merges them (e.g. params.yaml my.yaml)")
    p.add_argument("--allow-unused", action="store_true",
                   help="a run name in run.methods that runs on no dataset is a warning, not an "
                        "error (as the config key run.allow_unused: true)")
    p.set_defaults(func=_lazy("ferbench.config:main"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ferbench import io, startup

    try:
        with io.signals_as_errors():
            startup.check_address_space(args.verb)  # before torch's import can crash
            return int(args.func(args) or 0)
    except FerbenchError as err:
        print(f"ferbench {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"ferbench {args.verb}: error: {startup.memory_message('out of memory')}", file=sys.stderr)
        return 2
    except (OSError, ImportError, RuntimeError) as err:
        line = startup.one_line(err)
        if line is None:
            raise
        print(f"ferbench {args.verb}: error: {line}", file=sys.stderr)
        return 2
    except io.Terminated as err:
        print(f"ferbench {args.verb}: {err}; temporary files removed", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
