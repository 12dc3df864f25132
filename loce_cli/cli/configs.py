"""``loce configs``: the shipped configs by name (train, finetune, eval and predict take a name as CONFIG)."""

from __future__ import annotations

import typer

from loce_cli.cli.render import out, print_json


def configs(json_out: bool = typer.Option(False, "--json", help="Machine-readable list.")) -> None:
    """The configs shipped with loce, by name: stage, dataset, backbone.

    Pass a name where a command takes CONFIG, e.g. loce train base lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1
    (a file path works too; docs/CONFIGS.md)."""
    from loce_cli.engine.config.names import GROUPS, configs_root, shipped_configs

    found = shipped_configs()
    if json_out:
        print_json(dict(root=str(configs_root()), configs=[c.to_dict() for c in found]))
        return
    from rich.markup import escape

    out.print(f"shipped configs ({configs_root()}); a name works as CONFIG, and so does a file path", soft_wrap=True)
    heading = None
    for c in sorted(found, key=lambda c: (GROUPS.index(c.name.split("/", 1)[0]), c.stage or 3, c.name)):
        group = c.name.split("/", 1)[0]
        if (group, c.stage) != heading:
            heading = (group, c.stage)
            out.print()
            out.print(f"{group}, stage {c.stage} ({c.command}):" if c.stage else f"{group}, no stage given:")
        facts = ", ".join(x for x in (c.dataset, c.backbone) if x)
        out.print(f"  [bold]{escape(c.name)}[/]", soft_wrap=True)
        out.print(f"      {escape(facts)}: {escape(c.summary)}" if c.summary else "      (no description)",
                  soft_wrap=True)
    out.print()
    out.print("e.g. loce train base lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1", soft_wrap=True)
