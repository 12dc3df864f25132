"""``loce doctor``: check the environment and say what to fix."""

from __future__ import annotations

from loce_cli.cli.failures import fail
from loce_cli.cli.options import JSON_OUTPUT
from loce_cli.cli.render import out, print_json, status


def doctor(json_out: bool = JSON_OUTPUT) -> None:
    """Check Python, torch (+ CUDA), torchvision, mmcv-full ops, mmdet, lvis, numpy; exit 1 if broken."""
    from loce_cli.engine.doctor import run_doctor

    with status("checking the environment...", json_out):
        report = run_doctor()
    if json_out:
        print_json(report.to_dict())
    else:
        _print_checks(report)
    if not report.ok:
        first = report.problems[0]
        hint = first.hint or "see the table above"
        raise fail(f"{first.name}: {first.detail} (hint: {hint})")


def _print_checks(report) -> None:
    from rich.table import Table

    checks = Table(title="loce doctor", title_justify="left", show_lines=False)
    checks.add_column("")
    checks.add_column("component")
    checks.add_column("version")
    checks.add_column("details", overflow="fold")
    for c in report.checks:
        mark = "[green]ok[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]--[/]")
        detail = c.detail + (f"\n[dim]fix: {c.hint}[/]" if (c.hint and not c.ok) else "")
        checks.add_row(mark, c.name, c.version or "-", detail)
    out.print(checks)
    if report.ok:
        out.print("[bold green]verdict: ready[/] - everything loce needs is installed and works.")
    else:
        names = ", ".join(c.name for c in report.problems)
        out.print(f"[bold red]verdict: not ready[/] - broken or missing: {names}")
