"""No function is more complex than it needs to be.

Radon's cyclomatic complexity grade C (11) or worse is allowed only where a comment right
above the function (or its decorators) says why: `# complexity: <reason>`. Tests and
migrations are not checked.
"""

import ast
from pathlib import Path

from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("analytics", "costsim", "feedback", "notifications", "predictions", "config", "scripts")
MARKER = "# complexity:"


def source_files() -> list[Path]:
    paths = []
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                paths.append(path)
    return paths


def marked_lines(source: str) -> set[int]:
    """Line numbers of the `def` of every function with the marker comment right above it."""
    lines = source.splitlines()
    marked = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        index = top - 2
        while index >= 0 and lines[index].lstrip().startswith("#"):
            comment = lines[index].strip()
            if comment.startswith(MARKER) and comment[len(MARKER) :].strip():
                marked.add(node.lineno)
            index -= 1
    return marked


def complex_functions(path: Path, root: Path = ROOT) -> list[tuple[str, str, bool]]:
    """(`path:name`, grade, marked) of each function or method graded C or worse."""
    source = path.read_text()
    marked = marked_lines(source)
    found = []
    # Radon lists functions and methods on their own, and classes with their methods' total.
    for function in cc_visit(source):
        if hasattr(function, "methods"):
            continue
        grade = cc_rank(function.complexity)
        if grade >= "C":
            name = f"{path.relative_to(root)}:{function.fullname}"
            found.append((name, grade, function.lineno in marked))
    return found


def test_the_check_grades_functions_and_reads_the_marker(tmp_path):
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(12))
    sample = tmp_path / "sample.py"
    sample.write_text(
        f"def plain(x):\n{branches}\n\n"
        f"# complexity: one branch per value\n@staticmethod\ndef marked(x):\n{branches}\n\n"
        f"# complexity:\ndef empty_reason(x):\n{branches}\n\n"
        f"class Box:\n    # complexity: the same\n    def method(self, x):\n"
        + "".join(f"        if x == {i}:\n            return {i}\n" for i in range(12))
        + "\n\ndef simple(x):\n    return x\n"
    )

    assert complex_functions(sample, root=tmp_path) == [
        ("sample.py:plain", "C", False),
        ("sample.py:marked", "C", True),
        ("sample.py:empty_reason", "C", False),
        ("sample.py:Box.method", "C", True),
    ]


def test_every_complex_function_says_why():
    unexplained = sorted(
        f"{name} ({grade})"
        for path in source_files()
        for name, grade, marked in complex_functions(path)
        if not marked
    )
    assert unexplained == []
