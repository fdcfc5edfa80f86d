"""The paper's four chain networks must not change while the zoo grows: their layer tables (every column, the
dtypes and the attrs) are pinned by a hash of their CSV text, so make reproduce's figures stay as they are."""

import hashlib

import pytest

from dnnpart import networks

PINNED = {
    "lenet": "5d169457e7d3d5b8a533133b9157605ffcc5b60c9e170f0f39f7125d2b9890ed",
    "alexnet": "07cee636d7f3b51af6f6d263023087939aa452e8fc48860b9ef030d2ecae31e4",
    "vgg13": "f567d066d74341bf7c2e6c3e03ccda50a423a8a12bc1c7c5514fb321b9aaf9a0",
    "vgg16": "86e4e4c65aeb8f48cd999f1387ba8c9718095034fdf420f2332d03f7e1a7e813",
}


@pytest.mark.parametrize("name", list(PINNED))
def test_chain_zoo_tables_are_byte_identical(name):
    table = networks.get(name)
    text = table.to_csv(index=False) + repr(table.attrs)
    assert hashlib.sha256(text.encode()).hexdigest() == PINNED[name]
    assert list(table.columns) == networks.COLUMNS and (table.dtypes[networks.NUMERIC_COLUMNS] == "int64").all()
