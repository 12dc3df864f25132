"""Write docs/CLI.md (every command and option) from the Typer app (``make docs-cli``)."""

from pathlib import Path

from loce_cli.cli.reference import generate

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    path = ROOT / "docs" / "CLI.md"
    path.write_text(generate())
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
