"""Safe writing: every output goes through files.atomic_write_bytes, which never destroys what it should not."""

import os
import stat

import pytest

from dnnpart import cli
from dnnpart.files import OutputPathError, atomic_write_text, check_writable, write_csv


def test_writes_a_new_file_and_leaves_no_temporary(tmp_path):
    out = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert out.read_text() == "hello" and sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt"]


def test_keeps_the_mode_of_an_existing_file(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("old")
    path.chmod(0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_writes_through_a_symlink_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: (p.write_text("keep"), p.chmod(0o444)), "read-only"),
    ],
)
def test_refuses_directories_and_read_only_files(tmp_path, make, message):
    target = tmp_path / "out"
    make(target)
    before = target.stat()
    with pytest.raises(OutputPathError, match=message):
        atomic_write_text(target, "x")
    assert target.stat().st_ino == before.st_ino  # untouched


def test_refuses_a_device_node():
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(OutputPathError, match="not a regular file"):
        check_writable("/dev/null")
    with pytest.raises(OutputPathError, match="not a regular file"):
        atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still a device


def test_a_failed_write_removes_its_temporary_file(tmp_path):
    class Boom:
        def to_csv(self, **kwargs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_csv(Boom(), tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_bad_output_before_working(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    assert cli.main(["compile", "--scenario", "examples/does-not-matter.yaml", "-o", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory" in err[0]  # refused before the scenario is even read
    assert cli.main(["solve", "--scenario", "examples/heterogeneous.yaml", "--report", str(folder)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and "--report" in err.err and "is a directory" in err.err  # before any solve


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """A writer killed mid-write (SIGKILL: no cleanup runs) leaves .NAME.PID.tmp; the next write removes it."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".profile.csv.{pid}.tmp"
    stale.write_text("half")
    alive = tmp_path / f".profile.csv.{os.getppid()}.tmp"  # a running writer's temporary is left alone
    alive.write_text("in progress")
    atomic_write_text(tmp_path / "profile.csv", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "profile.csv"])
