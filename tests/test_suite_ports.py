"""`make test` runs test files side by side (pytest-xdist, one file per unit): two files that start distributed
processes on the same fixed port could meet. Each fixed port of the suite belongs to one test file."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PORT = re.compile(r"(?:master-port[\"'],\s*[\"']|master_port=|--master_port=|port\s*=\s*[\"'])(\d{4,5})\b")


def test_each_fixed_port_belongs_to_one_test_file():
    owners: dict = {}
    for path in sorted(TESTS.rglob("*.py")):
        for port in set(PORT.findall(path.read_text())):
            owners.setdefault(port, []).append(str(path.relative_to(TESTS)))
    assert len(owners) >= 15, owners  # the pattern still finds the suite's ports
    shared = {port: files for port, files in owners.items() if len(files) > 1}
    assert not shared, f"ports used by more than one test file (give one a port no other file uses): {shared}"
