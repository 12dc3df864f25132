"""``loce doctor``: check the environment and say what to fix."""

from __future__ import annotations

import typer

from loce_cli.cli._common import engine_errors, err, fail, out, print_json


@engine_errors
def doctor(
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check Python, torch (+ CUDA), torchvision, mmcv-full ops, mmdet, lvis, numpy; exit 1 if broken."""
    from loce_cli.engine.doctor import run_doctor

    if not json_out and err.is_terminal:
        with err.status("checking the environment..."):
            report = run_doctor()
    else:
        report = run_doctor()
    if json_out:
        print_json(report.to_dict())
    else:
        from rich.table import Table

        table = Table(title="loce doctor", title_justify="left", show_lines=False)
        table.add_column("")
        table.add_column("component")
        table.add_column("version")
        table.add_column("details", overflow="fold")
        for c in report.checks:
            mark = "[green]ok[/]" if c.ok else ("[red]FAIL[/]" if c.required else "[yellow]--[/]")
            detail = c.detail + (f"\n[dim]fix: {c.hint}[/]" if (c.hint and not c.ok) else "")
            table.add_row(mark, c.name, c.version or "-", detail)
        out.print(table)
        if report.ok:
            out.print("[bold green]verdict: ready[/] - everything loce needs is installed and works.")
        else:
            names = ", ".join(c.name for c in report.problems)
            out.print(f"[bold red]verdict: not ready[/] - broken or missing: {names}")
    if not report.ok:
        first = report.problems[0]
        hint = first.hint or "see the table above"
        raise fail(f"{first.name}: {first.detail} (hint: {hint})")
