"""Write completions/loce.bash, completions/_loce (zsh) and completions/loce.fish from the Typer app."""

from pathlib import Path

from loce_cli.cli.completion import FILE_NAMES, SHELLS, generate

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    folder = ROOT / "completions"
    folder.mkdir(exist_ok=True)
    for shell in SHELLS:
        path = folder / FILE_NAMES[shell]
        path.write_text(generate(shell))
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
