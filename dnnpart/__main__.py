import os
import sys

from dnnpart.cli import main

code = main()
if sys.argv[1:2] == ["device"]:
    # A device's onnxruntime sessions and gRPC threads take about a second to tear down at interpreter exit, and
    # the testbed waits for that at every start of its devices; by now the outputs are written (atomically) and
    # the channel is closed, so the process ends here, its streams flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
