"""The probe upload: `--uplink-mbps measured` times a stream of filler chunks on the server's clock, registers
that rate, and the plan, the log and completions.csv use it. Bad probe options are one line."""

import math

import pandas as pd
import pytest
from runtime_helpers import running_server

from dnnpart import cli
from dnnpart.errors import RuntimeConfigError
from dnnpart.runtime.device import PROBE_CHUNK_BYTES, DeviceClient, DeviceError, check_probe, check_uplink

LENET_LOCAL = [0.5] * 8


def test_a_probe_on_loopback_measures_a_positive_finite_rate_and_the_plan_uses_it(tmp_path):
    limit = 256 << 10
    with running_server(tmp_path / "out", expected=1, max_message_bytes=limit) as (address, service):
        with (
            DeviceClient(address, "big", "lenet", "measured", local_ms=LENET_LOCAL, probe_bytes=limit + 1) as c,
            pytest.raises(DeviceError, match=f"RESOURCE_EXHAUSTED: probe of more than {limit} bytes is over"),
        ):
            c.probe_uplink()
        probe_bytes = 200 << 10
        with DeviceClient(address, "p", "lenet", "measured", local_ms=LENET_LOCAL, cut=2, probe_bytes=probe_bytes) as c:
            [result] = c.run(1)
            probe = c.probe_result
            assert c.uplink_mbps == probe.mbps
        registered = service.devices["p"]
        instance = service.plan["instance"]
    assert math.isfinite(probe.mbps) and probe.mbps > 0
    # 1 MiB is not reached in 2 s on loopback: every chunk the device sent arrived and was counted
    assert probe.received_bytes == probe_bytes and probe.chunks == -(-probe_bytes // PROBE_CHUNK_BYTES)
    # the rate is the bytes after the first chunk over the server's elapsed time (by construction of Probe)
    assert probe.mbps == pytest.approx((probe_bytes - PROBE_CHUNK_BYTES) * 8e-3 / probe.elapsed_ms, rel=1e-9)
    assert registered.uplink_mbps == probe.mbps
    # the plan's upload time of the cut tensor is its bytes at the measured rate
    upload_ms = instance.devices[0].upload_ms[2]
    assert upload_ms == pytest.approx(20 * 12 * 12 * 4 * 8e-3 / probe.mbps, rel=1e-6)
    assert result.cut == 2
    done = pd.read_csv(tmp_path / "out" / "completions.csv")
    assert done[["device", "uplink_from"]].values.tolist() == [["p", "probe"]]
    assert done["uplink_mbps"].iloc[0] == pytest.approx(probe.mbps, rel=1e-9)
    log = (tmp_path / "out" / "server.log").read_text()
    assert "probe from ipv4:127.0.0.1" in log and f"{probe_bytes} bytes in {probe.chunks} chunks" in log
    assert f"registered p: lenet (seed 0), uplink {probe.mbps:g} Mbps (measured by a probe: {probe_bytes} bytes" in log
    assert "refused Probe" in log and "RESOURCE_EXHAUSTED" in log


def test_bad_uplink_and_probe_options_are_one_line():
    assert check_uplink("measured") == "measured" and check_uplink("12.5") == 12.5
    for bad in ("fast", "0", "-3", "nan", "inf", True):
        with pytest.raises(RuntimeConfigError, match=r"--uplink-mbps must be a positive number of Mbps or 'measured'"):
            check_uplink(bad)
    with pytest.raises(RuntimeConfigError, match=r"--probe-bytes must be an integer in 131072\.\.1073741824, got 100"):
        check_probe(100, 1.0)
    with pytest.raises(RuntimeConfigError, match=r"--probe-seconds must be a number of seconds in \(0, 600\]"):
        check_probe(1 << 20, 0.0)
    with pytest.raises(RuntimeConfigError, match="the uplink is to be measured: call probe_uplink"):
        DeviceClient("127.0.0.1:1", "n", "lenet", "measured").register()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--uplink-mbps", "fast"], "--uplink-mbps must be a positive number of Mbps or 'measured'"),
        (["--uplink-mbps", "10", "--probe-bytes", "65536"], "--probe-bytes and --probe-seconds need --uplink-mbps"),
        (["--uplink-mbps", "measured", "--probe-bytes", "5"], "--probe-bytes must be an integer in"),
        (["--uplink-mbps", "measured", "--probe-seconds", "-1"], "--probe-seconds must be a number of seconds"),
        (["--uplink-mbps", "10", "--cgroup-procs", "/no/such/procs"], "--cgroup-procs /no/such/procs: no such"),
    ],
)
def test_the_cli_refuses_bad_probe_options_with_one_line(capsys, extra, message):
    argv = ["device", "--server", "127.0.0.1:1", "--name", "n", "--network", "lenet", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_probe_without_the_token_is_refused(tmp_path):
    with running_server(tmp_path / "out", expected=1, token="s3cret") as (address, _):
        with (
            DeviceClient(address, "x", "lenet", "measured", token="guess") as c,
            pytest.raises(DeviceError, match="UNAUTHENTICATED: missing or wrong token"),
        ):
            c.probe_uplink()
        with DeviceClient(address, "y", "lenet", "measured", token="s3cret", probe_bytes=256 << 10) as c:
            assert c.probe_uplink().received_bytes == 256 << 10
    assert "refused Probe: UNAUTHENTICATED" in (tmp_path / "out" / "server.log").read_text()
