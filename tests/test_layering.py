"""Imports point one way inside each app: services and selectors never reach the API layer.

Services raise the errors of `analytics/errors.py` and format dates with
`analytics/datetimes.py`; the API maps and renders. The check reads the source files, so an
import inside a function counts as much as one at the top.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("analytics", "costsim", "feedback", "notifications", "predictions")

# Modules allowed to import the API layer, each with the reason. An entry that no longer
# imports it fails the test, so the list only shrinks.
ALLOWED = {
    # Webhook and email events carry an incident or a budget exactly as the API shows it,
    # so the event body is built with the API's serializers and money renderer.
    "notifications/services/events.py",
}


def layer_modules() -> list[Path]:
    paths = []
    for app in APPS:
        base = ROOT / app
        for layer in ("services", "selectors"):
            package = base / layer
            if package.is_dir():
                paths += sorted(package.rglob("*.py"))
            module = base / f"{layer}.py"
            if module.is_file():
                paths.append(module)
    return paths


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            # `from analytics import api` names the package in the alias.
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def api_imports(path: Path, root: Path = ROOT) -> list[str]:
    return sorted(
        name
        for name in imported_modules(path, root)
        if name.split(".")[0] in APPS and "api" in name.split(".")[1:]
    )


def test_the_check_sees_every_layer_and_catches_an_api_import(tmp_path):
    paths = {str(path.relative_to(ROOT)) for path in layer_modules()}
    assert "analytics/services/anomaly_lifecycle.py" in paths
    assert "analytics/selectors/statistics.py" in paths
    assert "notifications/selectors.py" in paths

    sample = tmp_path / "analytics" / "services" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "def f():\n    from ..api.errors import Conflict\n    import costsim.api.views\n"
        "from analytics import api\nfrom analytics.apis import x\nfrom analytics.errors import y\n"
    )
    assert api_imports(sample, root=tmp_path) == [
        "analytics.api",
        "analytics.api.errors",
        "analytics.api.errors.Conflict",
        "costsim.api.views",
    ]


def test_services_and_selectors_never_import_the_api_layer():
    offenders = {}
    for path in layer_modules():
        name = str(path.relative_to(ROOT))
        if name not in ALLOWED and (found := api_imports(path)):
            offenders[name] = found
    assert offenders == {}


def test_every_allowed_module_still_needs_its_exception():
    stale = [name for name in sorted(ALLOWED) if not api_imports(ROOT / name)]
    assert stale == []
