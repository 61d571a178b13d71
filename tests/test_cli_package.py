"""The shape of the `vstar` command package: fast to start (no torch, no diffusers), one module per command
and one shared module, no command importing another."""

import ast
import subprocess
import sys
from pathlib import Path

import vstar.cli

PACKAGE = Path(vstar.cli.__file__).parent
SHARED = {"__init__", "common"}


def test_help_and_the_torch_free_commands_load_neither_torch_nor_diffusers():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom vstar.cli import app\n"
            "for args in (['--help'], ['version'], ['synopsis', 'a landscape from winter to spring', '-b', 'rules',"
            " '--no-cache'], ['batch', '--help']):\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, (args, result.output)\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'vstar.pipeline') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def command_modules() -> dict[str, Path]:
    return {path.stem: path for path in PACKAGE.glob("*.py") if path.stem not in SHARED}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (``from vstar.cli import x`` counts as ``vstar.cli.x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_command_module_imports_another():
    commands = command_modules()
    assert {"generate", "batch", "synopsis", "analyze", "evaluate", "convert", "models"} <= set(commands)
    for name, path in commands.items():
        others = {f"vstar.cli.{other}" for other in commands if other != name}
        assert not imported_modules(path) & others, f"{name}.py imports another command module"
        assert "vstar.cli" not in imported_modules(path) - {"vstar.cli.common"}, f"{name}.py imports vstar.cli"


def test_the_library_never_imports_the_command_package():
    front_ends = (PACKAGE, PACKAGE.parent / "ui")  # the web page builds its settings with the CLI's functions
    library = [p for p in PACKAGE.parent.rglob("*.py")
               if not any(f in p.parents for f in front_ends) and p.name != "__main__.py"]
    for path in library:
        assert not any(m == "vstar.cli" or m.startswith("vstar.cli.") for m in imported_modules(path)), path
