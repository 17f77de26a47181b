"""Library code reports through ``logging`` (which Hydra routes to the console and the run's log file),
never bare ``print``; entry points and scripts may print."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "src" / "mambabench"
# the entry points' console layer: one-line error messages on stderr (before logging exists), the final
# metrics table and the generated samples, which are the output the user asked for
CONSOLE = {"utils/cli.py", "utils/reporting.py", "utils/sampling.py"}


def test_library_code_does_not_print() -> None:
    prints = [
        f"{path.relative_to(LIBRARY.parent)}:{node.lineno}"
        for path in sorted(LIBRARY.rglob("*.py"))
        if str(path.relative_to(LIBRARY)) not in CONSOLE
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert not prints, "use logging.getLogger(__name__) instead of print in library code: " + ", ".join(
        prints
    )
