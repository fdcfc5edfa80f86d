"""The `dnnpart` command line: one subcommand per capability.

Every user error (a DnnpartError, or argparse's own) ends with one line on stderr and exit status 2.
Subcommand modules are imported only when used, so `dnnpart networks` stays fast.
"""
from __future__ import annotations

import argparse
import sys

from dnnpart.errors import DnnpartError


class _Parser(argparse.ArgumentParser):
    """argparse that prints one line (not the usage block) and exits 2 on bad arguments."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnnpart", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("networks", help="list the network zoo, or print one network's layer table")
    p.add_argument("name", nargs="?", help="a zoo network name or a path to a chain-structured .onnx file")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per layer")
    p.set_defaults(handler="dnnpart.networks:cli_networks")

    p = sub.add_parser("profile", help="measure single-layer delays with onnxruntime into a profile folder")
    p.add_argument("--role", required=True, choices=["device", "server"])
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: 1 for device, all cores for server)")
    p.add_argument("--out", required=True, help="profile folder, e.g. data/profiles/NAME")
    p.add_argument("--layer-types", default=None, help="comma-separated subset of layer types to measure")
    p.add_argument("--limit", type=int, default=None, help="measure at most this many configurations per layer type")
    p.add_argument("--repeats", type=int, default=None, help="timed layer runs per window (default: adaptive, 5 to 25)")
    p.add_argument("--passes", type=int, default=None, help="timing windows per configuration, one per pass; the fastest is kept (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None, help="free text stored in the metadata JSON (e.g. machine conditions)")
    p.set_defaults(handler="dnnpart.profiling:cli_profile")

    p = sub.add_parser("fit", help="fit delay models on a profile and print held-out metrics")
    p.add_argument("--profile", required=True, help="a name under data/profiles/ or a path to a profile folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="dnnpart.delay:cli_fit")

    p = sub.add_parser("solve", help="choose every device's cut and the server schedule (exact MILP)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--instance", help="an instance JSON file")
    src.add_argument("--network", help="a zoo network name: build identical devices from it")
    src.add_argument("--scenario", help="a scenario YAML/JSON file")
    p.add_argument("--devices", type=int, default=4, help="number of identical devices (with --network)")
    p.add_argument("--bandwidth-mbps", type=float, default=5.0, help="uplink rate per device (with --network)")
    p.add_argument("--load", type=float, default=0.0, help="server load level rho in [0, 1) (with --network)")
    p.add_argument("--profile", default="paper", help="delay profile (with --network)")
    p.add_argument("--formulation", default="exact", choices=["exact", "paper"])
    p.add_argument("--time-limit", type=float, default=None, help="seconds; returns the best schedule found and its gap")
    p.add_argument("--report", default=None, help="write a standalone HTML plan (with --scenario)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="dnnpart.solve_cli:cli_solve")

    p = sub.add_parser("compile", help="compile a scenario file into an optimiser instance JSON")
    p.add_argument("--scenario", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(handler="dnnpart.scenario:cli_compile")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    import importlib

    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return handler(args) or 0
    except DnnpartError as exc:
        print(f"dnnpart {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dnnpart networks vgg16 | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
