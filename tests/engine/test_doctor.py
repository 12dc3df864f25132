import sys

import pytest

from loce_cli.engine import doctor


def test_doctor_passes_in_the_project_environment():
    report = doctor.run_doctor()
    names = [c.name for c in report.checks]
    assert names[:5] == ["python", "numpy", "torch", "torchvision", "mmcv-full"]
    assert report.ok, [(c.name, c.detail) for c in report.problems]
    mmcv = next(c for c in report.checks if c.name == "mmcv-full")
    assert "cpu" in mmcv.detail and mmcv.version.startswith("1.")
    assert next(c for c in report.checks if c.name == "mmdet").version.startswith("2.")
    assert report.to_dict()["ok"] is True


def test_missing_compiled_ops_are_reported_with_a_hint(monkeypatch):
    # A `None` entry in sys.modules makes `import mmcv.ops` raise ImportError, like mmcv without ops.
    monkeypatch.setitem(sys.modules, "mmcv.ops", None)
    report = doctor.run_doctor()
    check = next(c for c in report.checks if c.name == "mmcv-full")
    assert not check.ok and "compiled ops do not load" in check.detail
    assert "MMCV_WITH_OPS=1" in check.hint
    assert not report.ok


def test_missing_package_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "lvis", None)
    report = doctor.run_doctor()
    check = next(c for c in report.checks if c.name == "lvis")
    assert not check.ok and "import of lvis" in check.detail and check.hint


def test_streaming_evaluator_check_runs_the_kernel_and_reports_missing_numba(monkeypatch):
    from loce_cli.engine.evaluation import matching
    from loce_cli.errors import EnvironmentProblem

    check = doctor._check("numba", True, doctor.check_streaming_evaluator)
    assert check.ok and "compiles and runs" in check.detail
    monkeypatch.setattr(matching, "numba", None)
    check = doctor._check("numba", True, doctor.check_streaming_evaluator)
    assert not check.ok and "numba" in check.detail
    with pytest.raises(EnvironmentProblem, match="numba"):
        matching.warm_up()
