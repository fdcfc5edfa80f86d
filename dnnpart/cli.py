"""The `dnnpart` command line: one subcommand per capability.

Every user error (a DnnpartError, or argparse's own) ends with one line on stderr and exit status 2.
Every command's handler lives here (`cmd_<command>`); each imports the library parts it needs when it runs,
so `dnnpart networks` stays fast and the optimiser's Pyomo is loaded only to solve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from dnnpart.errors import DnnpartError

# `dnnpart schema NAME`: the pydantic model declaring each input file format (module, class).
SCHEMAS = {
    "scenario": ("dnnpart.planning.scenario_schema", "ScenarioFile"),
    "instance": ("dnnpart.optimiser.instance_schema", "InstanceFile"),
}


# Import names of the planner extra's packages (pyproject.toml): a command that needs one on an install without
# the extra (a board: only the device's numpy, onnxruntime, grpcio, protobuf) says how to get them.
PLANNER_IMPORTS = (
    "pandas",
    "statsmodels",
    "pyomo",
    "highspy",
    "matplotlib",
    "onnx",
    "tqdm",
    "yaml",
    "jinja2",
    "pydantic",
    "scipy",
    "patsy",
)
# The scale extra's (Dask sweeps, Parquet output).
SCALE_IMPORTS = ("dask", "distributed", "pyarrow")


class _Parser(argparse.ArgumentParser):
    """argparse that prints one line (not the usage block) and exits 2 on bad arguments."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnnpart", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show a traceback instead of a one-line error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("networks", help="list the network zoo, or print one network's layers and blocks")
    p.add_argument("name", nargs="?", help="a zoo network name or a path to an .onnx file (a chain or a DAG)")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per layer (or block)")
    p.add_argument(
        "--blocks", action="store_true", help="only the blocks between cut points, the subtasks the optimiser sees"
    )
    p.set_defaults(handler=cmd_networks)

    p = sub.add_parser("profile", help="measure single-layer delays with onnxruntime into a profile folder")
    p.add_argument("--role", required=True, choices=["device", "server"])
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: 1 for device, all cores for server)"
    )
    p.add_argument("--out", required=True, help="profile folder, e.g. data/profiles/NAME")
    p.add_argument("--layer-types", default=None, help="comma-separated subset of layer types to measure")
    p.add_argument("--limit", type=int, default=None, help="measure at most this many configurations per layer type")
    p.add_argument("--repeats", type=int, default=None, help="timed layer runs per window (default: adaptive, 5 to 25)")
    p.add_argument(
        "--passes",
        type=int,
        default=None,
        help="timing windows per configuration, one per pass; the fastest is kept (default 5)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None, help="free text stored in the metadata JSON (e.g. machine conditions)")
    p.add_argument(
        "--cpu-quota",
        type=float,
        default=None,
        help="measure under this CPU quota, a fraction of one core (an emulated device; root and cgroups)",
    )
    p.set_defaults(handler=cmd_profile)

    p = sub.add_parser("import-profile", help="map layer timings measured by another tool into a profile folder")
    p.add_argument("file", help="the timings: one row per layer (schema: docs/deployment.md)")
    p.add_argument("--from", dest="fmt", required=True, choices=["csv"], help="the file's format")
    p.add_argument("--role", required=True, choices=["device", "server"])
    p.add_argument("--out", required=True, help="profile folder to create, e.g. data/profiles/NAME")
    p.set_defaults(handler=cmd_import_profile)

    p = sub.add_parser("fit", help="fit delay models on a profile and print held-out metrics")
    p.add_argument("--profile", required=True, help="a name under data/profiles/ or a path to a profile folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_fit)

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
    p.add_argument(
        "--time-limit", type=float, default=None, help="seconds; returns the best schedule found and its gap"
    )
    p.add_argument("--report", default=None, help="write a standalone HTML plan (with --scenario)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_solve)

    p = sub.add_parser("compile", help="compile a scenario file into an optimiser instance JSON")
    p.add_argument("--scenario", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("schema", help="print the JSON Schema of scenario or instance files")
    p.add_argument("name", choices=sorted(SCHEMAS), help="which file format")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("sweep", help="solve every point of a grid (or random draws) into Parquet, locally or on Dask")
    p.add_argument("--grid", required=True, help="grid file (YAML or JSON): docs/scaling.md")
    p.add_argument("--out", required=True, help="results Parquet file; an interrupted sweep resumes from OUT.parts/")
    p.add_argument(
        "--scheduler",
        default=None,
        help="serial, local (a Dask LocalCluster, the default) or a Dask scheduler address tcp://HOST:PORT "
        "(default: $DNNPART_SCHEDULER, else local)",
    )
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: one per core)")
    p.add_argument(
        "--chunk-points", type=int, default=None, help="points per chunk, the unit of resume (default: auto)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("serve", help="run the edge server: register devices, plan, run their offloaded layers (gRPC)")
    p.add_argument("--port", type=int, default=50051, help="TCP port; 0 picks a free one (printed, and in server.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--devices", type=int, default=1, help="plan once this many devices have registered")
    p.add_argument(
        "--plan-deadline",
        type=float,
        default=None,
        help="seconds after the first registration to plan with whoever registered",
    )
    p.add_argument("--policy", default="plan", help="server order: plan (the optimiser's), fifo or srpt")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    p.add_argument("--token-file", default=None, help="file holding the shared secret every call must carry")
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain (with --tls-key: serve over TLS)")
    p.add_argument("--tls-key", default=None, help="PEM private key")
    p.add_argument("--out", default="serve-out", help="output folder: server.log, timeline.csv, plan.csv, ...")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest tensor accepted, in MB (2^20 bytes)")
    p.add_argument(
        "--max-model-mb", type=float, default=600.0, help="largest ONNX model a device may upload, in MB (2^20 bytes)"
    )
    p.add_argument(
        "--models", default=None, help="folder of ONNX chain models the server holds (devices send only hashes)"
    )
    p.add_argument(
        "--layer-cache",
        default=None,
        help="folder keeping zoo networks' layer models between runs (read instead of drawn again; may be shared "
        "with devices)",
    )
    p.add_argument("--server-profile", default="measured", help="delay profile predicting the server's layer times")
    p.add_argument(
        "--server-scale",
        type=float,
        default=1.0,
        help="multiply the profile's server times by this (how much slower this machine runs now; the testbed "
        "measures it)",
    )
    p.add_argument("--load", type=float, default=0.0, help="server load level rho in [0, 1) for the plan")
    p.add_argument("--time-limit", type=float, default=10.0, help="the optimiser's time limit, seconds")
    p.add_argument(
        "--stall",
        type=float,
        default=30.0,
        help="policy plan: seconds a device may be late for its turn before the server moves on",
    )
    p.add_argument("--barrier-timeout", type=float, default=60.0, help="seconds a round waits for late devices")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("device", help="run a device: register with a server, get its cut, run split inference")
    p.add_argument("--server", required=True, help="HOST:PORT of `dnnpart serve`")
    p.add_argument("--name", required=True, help="this device's unique name")
    p.add_argument(
        "--network",
        required=True,
        help="a zoo network name, or the path of this device's own ONNX chain model (.onnx; uploaded if the server "
        "does not hold it)",
    )
    p.add_argument("--profile", default="measured", help="the device's delay profile (predicted on the server)")
    p.add_argument(
        "--local-scale",
        type=float,
        default=1.0,
        help="the server multiplies the profile's local times by this (how much slower this device runs now; the "
        "testbed measures it)",
    )
    p.add_argument(
        "--uplink-mbps",
        required=True,
        help="the uplink rate the plan assumes, Mbps, or 'measured': probe it with an upload before registering",
    )
    p.add_argument("--probe-bytes", type=int, default=None, help="largest probe upload (default 1 MiB)")
    p.add_argument("--probe-seconds", type=float, default=None, help="a probe stops sending after this (default 2)")
    p.add_argument("--repeats", type=int, default=1, help="rounds to run")
    p.add_argument("--cut", type=int, default=None, help="fix the cut instead of letting the plan choose it")
    p.add_argument("--seed", type=int, default=0, help="weight seed (the server builds the same weights)")
    p.add_argument("--input-seed", type=int, default=0, help="round k's input is drawn with seed input-seed + k")
    p.add_argument("--token-file", default=None)
    p.add_argument("--tls-ca", default=None, help="PEM certificate to trust for a TLS server")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds any one call may take")
    p.add_argument(
        "--emulate-uplink",
        action="store_true",
        help="hold each upload for its time at --uplink-mbps (for loopback tests)",
    )
    p.add_argument(
        "--token-bucket-mbps",
        type=float,
        default=None,
        help="limit uploads with a token bucket at this rate (the testbed's fallback for an unshaped link)",
    )
    p.add_argument(
        "--cgroup-procs",
        action="append",
        default=[],
        metavar="FILE",
        help="once the layers are warm, before the first round, write this process's pid into FILE (a cgroup's "
        "cgroup.procs; repeatable): the rounds run under that group's CPU quota, as the testbed's boards do",
    )
    p.add_argument(
        "--layer-cache",
        default=None,
        help="folder keeping the layers this device fetched: those it holds (checked by sha256) are not sent again",
    )
    p.add_argument("--save-outputs", default=None, help="folder for each round's output (.npy) and results.json")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_device)

    p = sub.add_parser("testbed", help="run a scenario on this host: emulated devices and links, every case measured")
    p.add_argument("--scenario", help="a scenario YAML/JSON file (zoo networks; cpu_quota, link_delay_ms)")
    p.add_argument("--policy", default="plan", help="Case 1's server order: plan (the optimiser's), fifo or srpt")
    p.add_argument("--repeats", type=int, default=3, help="rounds per case")
    p.add_argument("--out", default="testbed-out", help="output folder: tidy CSVs and testbed.json")
    p.add_argument("--report", default=None, help="write a standalone HTML report")
    p.add_argument("--compare-policies", action="store_true", help="also run the plan's cuts under the other policies")
    p.add_argument(
        "--fallback",
        action="store_true",
        help="use the non-root emulation (token bucket, no quota) even when tc and cgroups are usable",
    )
    p.add_argument("--server-threads", type=int, default=1, help="onnxruntime threads of the emulated server")
    p.add_argument(
        "--cases", default="case1,case2,case3,independent", help="comma-separated methods to run (default: all)"
    )
    p.add_argument("--probe-seconds", type=float, default=1.0, help="length of each link's probe upload")
    p.add_argument(
        "--speed-runs",
        type=int,
        default=3,
        help="rounds of every device all local (and 5x as many whole-network runs on the server) before the cases, "
        "to scale the profiles' predictions to this machine's speed now (0: predict from the profiles as they are)",
    )
    p.add_argument("--cleanup", action="store_true", help="only remove what killed testbed runs left, then exit")
    p.add_argument(
        "--calibrate-slowdown",
        type=float,
        default=None,
        metavar="FACTOR",
        help="only find the cpu_quota that makes a device FACTOR times slower than one native core on "
        "--calibrate-network, print it, then exit (needs root)",
    )
    p.add_argument("--calibrate-network", default="alexnet", help="the network --calibrate-slowdown times")
    p.set_defaults(handler=cmd_testbed)
    return parser


# --- handlers ------------------------------------------------------------------------------------------------


def cmd_networks(args) -> int:
    """`dnnpart networks [NAME|FILE.onnx] [--json] [--blocks]`: the zoo's totals, or one network's layer table
    (with each layer's inputs and block, for a DAG) and its blocks, the subtasks the optimiser sees."""
    from dnnpart import networks

    if args.name is None:
        zoo = networks.zoo_summary()
        print(json.dumps(zoo.to_dict(orient="records"), indent=1) if args.json else zoo.to_string(index=False))
        return 0
    table = networks.load(args.name)
    columns = networks.COLUMNS + (networks.DAG_COLUMNS if networks.is_dag(table) else [])
    shown = networks.block_table(table) if args.blocks else table[columns]
    if args.json:
        records = [
            {k: v if isinstance(v, str) else int(v) for k, v in row.items()} for row in shown.to_dict(orient="records")
        ]
        print(json.dumps(records, indent=1))
        return 0
    s = networks.summary(table)
    blocks = networks.block_table(table)
    print(
        f"{s['network']}: input {s['input_shape']}, {s['layers']} layers, {s['gmacs']} GMACs, "
        f"{s['mparams']} M params, output {s['output_shape']}"
    )
    if not args.blocks:
        print(shown.to_string(index=False))
    if not networks.is_dag(table):
        if args.blocks:
            print(blocks.to_string(index=False))
        return 0
    print(
        f"\n{len(blocks)} blocks: the layers between cut points (where one tensor crosses), the subtasks the "
        "optimiser sees"
    )
    print(blocks.to_string(index=False))
    return 0


def cmd_import_profile(args) -> int:
    """`dnnpart import-profile FILE --from csv --role ROLE --out FOLDER`: timings from another tool as a profile."""
    from dnnpart.delay import fit_report
    from dnnpart.delay.import_profile import import_profile

    path = import_profile(args.file, args.role, args.out, args.fmt)
    meta = json.loads((Path(args.out) / f"{args.role}.json").read_text(encoding="utf-8"))
    print(f"wrote {path}: {meta['configurations']} configurations from {meta['rows_read']} rows")
    if meta.get("fit_error"):
        print(f"not fitted yet: {meta['fit_error']}")
        return 0
    report = fit_report(args.out)
    print(report[report["role"] == args.role].to_string(index=False))
    flagged = meta["flagged"]
    print(f"{len(flagged)} rows flagged (latency over 3x from their type's fit; listed in {args.role}.json)")
    for r in flagged[:10]:
        print(
            f"  {r['layer_type']} in {r['in_channels']:g}x{r['in_side']:g}: measured {r['measured_ms']:.4g} ms, "
            f"fit {r['predicted_ms']:.4g} ms"
        )
    return 0


def cmd_profile(args) -> int:
    """`dnnpart profile`: measure a role's designed sweep into --out (resumable), under --cpu-quota if given."""
    from dnnpart.delay.profiler import PASSES, run_profile

    types = None if args.layer_types is None else [t.strip() for t in args.layer_types.split(",") if t.strip()]
    group = None
    if args.cpu_quota is not None:
        from dnnpart.testbed import cpu_quota

        group = cpu_quota.enter(args.cpu_quota, "profile")
    try:
        path = run_profile(
            args.out,
            args.role,
            threads=args.threads,
            layer_types=types,
            limit=args.limit,
            repeats=args.repeats,
            seed=args.seed,
            passes=PASSES if args.passes is None else args.passes,
            command="dnnpart " + " ".join(sys.argv[1:]),
            note=args.note,
            cpu_quota=args.cpu_quota,
        )
    finally:
        if group is not None:
            cpu_quota.leave(group)
    print(path)
    return 0


def cmd_fit(args) -> int:
    """`dnnpart fit`: held-out metrics of both families per role and layer type."""
    from dnnpart.delay import fit_report

    report = fit_report(args.profile, seed=args.seed)
    if args.json:  # a metric that cannot be computed is null, never a bare NaN (invalid JSON)
        records = [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in report.to_dict(orient="records")
        ]
        print(json.dumps(records, indent=1, allow_nan=False))
        return 0
    shown = report.copy()
    for col in ("mape", "within10"):
        shown[col] = (100 * shown[col]).map("{:.1f} %".format)
    shown["r2_test"] = shown["r2_test"].map("{:.4f}".format)
    shown["mae_ms"] = shown["mae_ms"].map("{:.4f}".format)
    print(shown.to_string(index=False))
    return 0


def check_solve_args(args) -> None:
    """Reject impossible scenario parameters before any work (exit status 2)."""
    from dnnpart.optimiser.instance import check_load
    from dnnpart.planning.compile import check_n_devices, check_rate

    if args.network is not None:
        check_rate(args.bandwidth_mbps, "--bandwidth-mbps")
        check_load(args.load, "--load")
        check_n_devices(args.devices, "--devices")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise DnnpartError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.report is not None and args.scenario is None:
        raise DnnpartError("--report needs --scenario")


def solve_input(args):
    """What `dnnpart solve` was given, as (LabelledInstance, source dict for the JSON, header line, compiled
    scenario or None)."""
    from dnnpart.planning.compile import LabelledInstance

    if args.scenario is not None:
        from dnnpart.planning.compile import compile_scenario
        from dnnpart.planning.plan_report import scenario_line, scenario_source

        compiled = compile_scenario(args.scenario)
        return compiled.labelled, scenario_source(compiled), scenario_line(compiled), compiled
    if args.instance is not None:
        from dnnpart.optimiser.instance import read_instance_json

        instance, data = read_instance_json(args.instance)
        return (
            LabelledInstance.of_annotated(instance, data),
            {"kind": "instance", "path": str(args.instance)},
            f"instance {args.instance}: {len(instance)} devices",
            None,
        )
    from dnnpart import networks
    from dnnpart.planning.compile import network_instance

    layers = networks.get(args.network)
    instance = network_instance(args.network, args.devices, args.bandwidth_mbps, args.load, args.profile)
    source = {
        "kind": "network",
        "network": layers.attrs["network"],
        "n_devices": args.devices,
        "bandwidth_mbps": args.bandwidth_mbps,
        "load": args.load,
        "profile": args.profile,
    }
    header = (
        f"{args.devices} x {layers.attrs['network']}, {args.bandwidth_mbps:g} Mbps uplinks, server load "
        f"{100 * args.load:g} %, profile {args.profile!r}"
    )
    return LabelledInstance.of_network(instance, layers), source, header, None


def cmd_solve(args) -> int:
    """`dnnpart solve --network|--instance|--scenario ... [--json] [--report out.html]`: the optimum and every
    baseline, printed as a plan (or JSON with the same keys for every kind of input)."""
    check_solve_args(args)
    if args.report is not None:
        from dnnpart.files import check_writable

        check_writable(args.report, "--report")  # fail before the solve, not after it
    labelled, source, header, compiled = solve_input(args)
    from dnnpart.optimiser.baselines import solve_all_methods
    from dnnpart.planning import plan_report

    solutions = solve_all_methods(labelled.instance, args.formulation, args.time_limit)
    written = plan_report.write_html(compiled, solutions, args.report) if args.report else None
    if args.json:
        print(json.dumps(plan_report.plan_dict(labelled, solutions, source), indent=1))
    else:
        print(plan_report.plan_text(labelled, solutions, header))
        if written:
            print(f"\nwrote {written}")
    return 0


def cmd_compile(args) -> int:
    """`dnnpart compile --scenario FILE -o instance.json`: write the instance any solver can read."""
    from dnnpart.files import atomic_write_text, check_writable
    from dnnpart.planning.compile import compile_scenario

    check_writable(args.output, "-o/--output")
    compiled = compile_scenario(args.scenario)
    out = atomic_write_text(Path(args.output), json.dumps(compiled.to_dict(), indent=1) + "\n")
    print(f"wrote {out}: {len(compiled.instance)} devices in {len(compiled.scenario.groups)} groups")
    return 0


def cmd_sweep(args) -> int:
    import os

    from dnnpart import parallel
    from dnnpart.study.grid_sweep import run_sweep

    scheduler = parallel.resolve_scheduler(args.scheduler or os.environ.get(parallel.SCHEDULER_ENV) or "local")
    if args.workers is not None:
        parallel.resolve_workers(args.workers)
    summary = run_sweep(
        args.grid, args.out, scheduler, args.workers, args.chunk_points, progress=not args.json and sys.stderr.isatty()
    )
    parallel.shutdown()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"{summary['points']} points in {args.out}: {summary['chunks_solved']} chunks solved, "
            f"{summary['chunks_resumed']} resumed"
        )
    return 0


def _exit_on_sigterm(signum, frame):
    """SIGTERM unwinds like Ctrl-C (SystemExit), so open atomic writes remove their temporary files."""
    raise SystemExit(128 + signum)


def schema_text(name: str) -> str:
    """The JSON Schema of one input file format, as committed under docs/schemas/<name>.schema.json."""
    import importlib

    module, model = SCHEMAS[name]
    return json.dumps(getattr(importlib.import_module(module), model).model_json_schema(), indent=2) + "\n"


def cmd_schema(args) -> int:
    """`dnnpart schema scenario|instance`: the declared file format, for editors and other tools."""
    sys.stdout.write(schema_text(args.name))


def cmd_serve(args) -> int:
    """`dnnpart serve`: the edge server, until SIGINT/SIGTERM; then it writes its log into --out."""
    from dnnpart.runtime.layer_cache import LayerCache
    from dnnpart.runtime.protocol import read_token
    from dnnpart.runtime.server import ServeConfig, serve

    for option, value in (("--max-message-mb", args.max_message_mb), ("--max-model-mb", args.max_model_mb)):
        if not (math.isfinite(value) and value > 0):
            raise DnnpartError(f"{option} must be a positive number, got {value}")
    config = ServeConfig(
        out=Path(args.out),
        expected=args.devices,
        host=args.host,
        port=args.port,
        policy=args.policy,
        threads=args.threads,
        token=read_token(args.token_file) if args.token_file else None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_message_bytes=int(args.max_message_mb * (1 << 20)),
        max_model_bytes=int(args.max_model_mb * (1 << 20)),
        models_dir=Path(args.models) if args.models else None,
        layer_cache=LayerCache(args.layer_cache) if args.layer_cache else None,
        plan_deadline_s=args.plan_deadline,
        barrier_timeout_s=args.barrier_timeout,
        stall_s=args.stall,
        server_profile=args.server_profile,
        server_scale=args.server_scale,
        load=args.load,
        time_limit_s=args.time_limit,
    )
    return serve(config, ready=lambda line: print(line, flush=True))


def cmd_device(args) -> int:
    """`dnnpart device`: one device of the MEC loop; prints measured completion beside the prediction."""
    from dnnpart.runtime.device import MEASURED, PROBE_BYTES, PROBE_SECONDS, DeviceClient, check_uplink
    from dnnpart.runtime.protocol import read_token

    measured = check_uplink(args.uplink_mbps) == MEASURED
    if not measured and (args.probe_bytes is not None or args.probe_seconds is not None):
        raise DnnpartError(f"--probe-bytes and --probe-seconds need --uplink-mbps {MEASURED}")
    token = read_token(args.token_file) if args.token_file else None
    limiter = None
    if args.token_bucket_mbps is not None:
        from dnnpart.testbed.token_bucket import TokenBucket

        limiter = TokenBucket(args.token_bucket_mbps)
    missing = [f for f in args.cgroup_procs if not Path(f).is_file()]
    if missing:
        raise DnnpartError(f"--cgroup-procs {missing[0]}: no such file (a cgroup's cgroup.procs)")

    def join_cgroups():  # after the set-up: building the layers under a tenth of a core takes ten times longer
        from dnnpart.testbed import cpu_quota

        cpu_quota.join(args.cgroup_procs, os.getpid())

    with DeviceClient(
        args.server,
        args.name,
        args.network,
        args.uplink_mbps,
        probe_bytes=PROBE_BYTES if args.probe_bytes is None else args.probe_bytes,
        probe_seconds=PROBE_SECONDS if args.probe_seconds is None else args.probe_seconds,
        profile=args.profile,
        local_scale=args.local_scale,
        cut=args.cut,
        seed=args.seed,
        token=token,
        tls_ca=args.tls_ca,
        threads=args.threads,
        timeout_s=args.timeout,
        emulate_uplink=args.emulate_uplink,
        uplink_limiter=limiter,
        on_ready=join_cgroups if args.cgroup_procs else None,
        layer_cache=args.layer_cache,
    ) as client:
        results = client.run(args.repeats, args.input_seed)
        uplink, probe = client.uplink_mbps, client.probe_result
    if probe is not None and not args.json:
        print(
            f"{args.name} uplink: {uplink:.2f} Mbps, measured by a probe of {probe.received_bytes} bytes "
            f"({probe.chunks} chunks, {probe.elapsed_ms:.1f} ms on the server's clock)"
        )
    records = [
        {
            "round": r.round,
            "device": args.name,
            "cut": r.cut,
            "cut_name": r.cut_name,
            "uplink_mbps": uplink,
            "uplink_from": "probe" if probe is not None else "configured",
            "predicted_ms": r.predicted_ms,
            "measured_ms": r.measured_ms,
        }
        for r in results
    ]
    if args.save_outputs:
        import io

        import numpy as np

        from dnnpart.files import atomic_write_bytes, atomic_write_text

        folder = Path(args.save_outputs)
        for r in results:
            buffer = io.BytesIO()
            np.save(buffer, r.output)
            atomic_write_bytes(folder / f"output-{r.round}.npy", buffer.getvalue())
        atomic_write_text(folder / "results.json", json.dumps(records, indent=1) + "\n")
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        for r in records:
            print(
                f"{args.name} round {r['round']}: cut {r['cut']} ({r['cut_name']}), "
                f"measured {r['measured_ms']:.1f} ms, "
                f"predicted {r['predicted_ms']:.1f} ms"
            )
    return 0


def cmd_testbed(args) -> int:
    """`dnnpart testbed --scenario FILE`: the scenario's server and devices on this host, each case measured."""
    from dnnpart.testbed import cpu_quota, links
    from dnnpart.testbed.run import remove_stale_caches, run_testbed

    if args.cleanup:
        removed = (links.remove_stale() if os.geteuid() == 0 else []) + cpu_quota.remove_stale(cpu_quota.detect())
        removed += remove_stale_caches()
        print(f"removed {len(removed)} stale testbed resources" + "".join(f"\n  {r}" for r in removed))
        return 0
    if args.calibrate_slowdown is not None:
        from dnnpart.networks import zoo
        from dnnpart.testbed.slowdown import calibrate_quota

        network = args.calibrate_network.strip().lower()
        zoo.get(network)  # an unknown name: one line with the valid choices
        found = calibrate_quota(network, args.calibrate_slowdown)
        for r in found["rounds"]:
            print(
                f"quota {r['cpu_quota']:.5g}: {r['slowdown']:.3g}x ({r['device_ms']:.1f} ms / {r['server_ms']:.1f} ms)"
            )
        print(f"cpu_quota: {found['cpu_quota']:.5g}  # {found['slowdown']:.3g}x slower on {found['network']}")
        return 0
    if args.scenario is None:
        raise DnnpartError("--scenario is required (or --cleanup, or --calibrate-slowdown)")
    if args.server_threads < 1:
        raise DnnpartError(f"--server-threads must be >= 1, got {args.server_threads}")
    if args.report is not None:
        from dnnpart.files import check_writable

        check_writable(args.report, "--report")
    result = run_testbed(
        args.scenario,
        args.out,
        policy=args.policy,
        repeats=args.repeats,
        fallback=args.fallback,
        compare_policies=args.compare_policies,
        server_threads=args.server_threads,
        probe_s=args.probe_seconds,
        speed_runs=args.speed_runs,
        methods=tuple(m.strip() for m in args.cases.split(",") if m.strip()),
        progress=lambda line: print(line, flush=True),
    )
    from dnnpart.testbed.report import summary_text, write_report

    print(result.info["mechanism"]["line"])
    print(summary_text(result))
    print(f"wrote {args.out}/completions.csv, subtasks.csv, plans.csv, links.csv, speed.csv, testbed.json")
    if args.report is not None:
        print(f"wrote {write_report(result, args.report)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.handler(args) or 0
    except DnnpartError as exc:
        if args.debug:
            raise
        print(f"dnnpart {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = "planner" if top in PLANNER_IMPORTS else "scale" if top in SCALE_IMPORTS else None
        if args.debug or extra is None:
            raise
        print(
            f"dnnpart {args.command}: error: this command needs the {extra} extra's packages ({exc.name} is not "
            f"installed): pip install 'dnnpart[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = " (rerun the same command to resume: measured windows are kept)" if args.command == "profile" else ""
        print(f"dnnpart {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `dnnpart networks vgg16 | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
