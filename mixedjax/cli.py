"""Command line: ``python -m mixedjax demo`` and ``python -m mixedjax fit DATA.csv ...``."""

import argparse
import sys
import warnings


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        self.exit(2, f"mixedjax: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mixedjax", description="Fit linear mixed-effects models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="fit sleepstudy (Reaction ~ Days + (Days | Subject))")
    fit = sub.add_parser("fit", help="fit a model to a CSV file")
    fit.add_argument("data", help="CSV file")
    fit.add_argument("--formula", required=True, help="fixed-effects formula, e.g. 'y ~ x'")
    fit.add_argument("--groups", required=True, help="grouping column")
    fit.add_argument("--re-formula", default=None, help="random-effects formula, e.g. '~x'")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``); returns the exit status.

    ``demo`` fits sleepstudy; ``fit DATA.csv --formula F --groups G [--re-formula R] [--ml]``
    fits a CSV file and prints the summary and lme4's variance components. Bad input gives a
    one-line error on stderr and status 2.

    Example:
        >>> main(["fit", "missing.csv", "--formula", "y ~ x", "--groups", "g"])
        2
    """
    args = _parser().parse_args(argv)
    import pandas as pd

    import mixedjax

    if args.command == "demo":
        data = mixedjax.datasets.load("sleepstudy")
        model = mixedjax.MixedLM.from_formula(
            "Reaction ~ Days", data, groups="Subject", re_formula="~Days"
        )
        print("mixedjax demo: Reaction ~ Days + (Days | Subject) on sleepstudy (REML)\n")
    else:
        try:
            data = pd.read_csv(args.data)
        except (OSError, ValueError) as err:
            print(f"mixedjax: error: cannot read {args.data}: {err}", file=sys.stderr)
            return 2
        if args.groups not in data.columns:
            print(
                f"mixedjax: error: --groups column {args.groups!r} is not in {args.data}",
                file=sys.stderr,
            )
            return 2
        data[args.groups] = data[args.groups].astype(str)
        try:
            model = mixedjax.MixedLM.from_formula(
                args.formula, data, groups=args.groups, re_formula=args.re_formula
            )
        except (ValueError, TypeError) as err:
            print(f"mixedjax: error: {str(err).splitlines()[0]}", file=sys.stderr)
            return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(reml=not getattr(args, "ml", False))
    print(result.summary())
    print()
    print(result.varcorr().to_string(index=False))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
