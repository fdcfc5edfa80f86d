"""Shared by the runtime tests: an in-process edge server on 127.0.0.1 (port 0), always stopped."""

import contextlib
import threading

from dnnpart.runtime.server import ServeConfig, serve


@contextlib.contextmanager
def running_server(out, **settings):
    """Yield (address, service) of a server running in a thread; stop it and join the thread, whatever happens.
    Defaults: the paper's fixed delay models (no fitting), a 5 s optimiser limit."""
    box, ready, stop = {}, threading.Event(), threading.Event()

    def started(service, port):
        box.update(service=service, port=port)
        ready.set()

    config = ServeConfig(out=out, **{"server_profile": "paper", "time_limit_s": 5.0, **settings})
    thread = threading.Thread(
        target=serve,
        args=(config,),
        daemon=True,
        kwargs={"ready": lambda line: None, "stop_event": stop, "started": started},
    )
    try:
        thread.start()
        assert ready.wait(timeout=60), "the server did not start"
        yield f"127.0.0.1:{box['port']}", box["service"]
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()
