"""A testbed device process: `python -m dnnpart.testbed.device_entry PROCS_FILE... -- <dnnpart device args>`.

It imports the device client at native speed, then writes its pid into its quota (and cpuset) groups and runs
`dnnpart device`. Starting a Python process under a tenth of a core would take ten times longer than its
imports need, time that is not part of any measured round; from registration on, everything (fetching and
warming up the layers, every round) runs on the emulated board.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: python -m dnnpart.testbed.device_entry PROCS_FILE... -- DEVICE_ARGS", file=sys.stderr)
        return 2
    split = argv.index("--")
    import runpy

    import dnnpart.runtime.device  # noqa: F401 - imported before joining the quota: start-up is not measured
    import dnnpart.testbed.token_bucket  # noqa: F401

    for procs in argv[:split]:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    # `dnnpart device ARGS` in this process, as `python -m dnnpart device ARGS` would run it
    sys.argv = ["dnnpart", "device", *argv[split + 1 :]]
    try:
        runpy.run_module("dnnpart", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
