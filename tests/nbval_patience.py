"""pytest hooks for the notebook run: `make test-notebooks` copies this file to the
notebook build folder as its conftest.py.

nbval waits a fixed 5 seconds for each output message of a cell once the cell has finished
(``IPyNbCell.output_timeout``, not an option). On a shared 2-core machine under load, the
kernel's output thread can be descheduled for longer than that, and a cell that ran correctly
fails with "Timeout of 5 seconds exceeded waiting for output" (seen in CI at load 8 on the
training cell of Chapter 2). The per-cell time limit stays with ``--nbval-cell-timeout``;
this only gives the messages of a finished cell longer to arrive.
"""

OUTPUT_TIMEOUT = 60  # seconds


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = max(item.output_timeout, OUTPUT_TIMEOUT)
