"""The documentation stays true to the code: the settings page and the links between pages.

Fast (no server, no engines): it regenerates docs/configuration.md from `Settings` with
scripts/settings_doc.py and reads the markdown files.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from agent.settings import PROJECT_ROOT

# A markdown link or image whose target has no scheme: `](docs/x.md)`, `](../README.md#a)`.
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def load_settings_doc() -> ModuleType:
    """scripts/settings_doc.py as a module (scripts/ is not a package)."""
    path = PROJECT_ROOT / "scripts" / "settings_doc.py"
    spec = importlib.util.spec_from_file_location("settings_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_files() -> list[Path]:
    """The README, every docs page and the benchmark results."""
    files = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    results = PROJECT_ROOT / "benchmarks" / "RESULTS.md"
    return [*files, results] if results.exists() else files


def test_configuration_page_is_what_the_generator_prints_from_settings() -> None:
    settings_doc = load_settings_doc()
    expected = settings_doc.render()
    page = PROJECT_ROOT / "docs" / "configuration.md"
    actual = page.read_text(encoding="utf-8") if page.exists() else ""
    if actual != expected:
        wanted = set(expected.splitlines())
        committed = set(actual.splitlines())
        changed = sorted(wanted - committed)[:5]
        raise AssertionError(
            "docs/configuration.md is out of date with agent/settings.py "
            f"(lines it lacks, first 5: {changed}); regenerate it with "
            "`.venv/bin/python scripts/settings_doc.py > docs/configuration.md`"
        )


def test_every_setting_has_a_description() -> None:
    missing = load_settings_doc().undocumented()
    assert not missing, (
        f"settings without a description: {missing}; give each a comment right above the "
        "field in agent/settings.py (or a Field description), then regenerate the page"
    )


def test_every_setting_appears_on_the_configuration_page() -> None:
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    settings_doc = load_settings_doc()
    names = [env for env, _, _, _ in settings_doc.rows()]
    assert len(names) >= 80  # a generator that lost the fields must not pass
    absent = [name for name in names if f"| `{name}` |" not in page]
    assert not absent, f"docs/configuration.md lacks {absent}"


def test_relative_links_between_the_pages_point_at_files_that_exist() -> None:
    broken = []
    checked = 0
    for page in markdown_files():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (https:, mailto:) or an anchor on the same page
            path = target.split("#", 1)[0]
            checked += 1
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(PROJECT_ROOT)}: ]({target})")
    assert checked > 0, "no relative link found: the link pattern no longer matches"
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)
