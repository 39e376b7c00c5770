"""The docs are tested: every adapter kind and option, every CLI command and every config
section is documented, and documented examples validate."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import pytest

from sources import registry
from sources.registry import validate_config
from watcher.cli import main
from watcher.config import Config

REPO = Path(__file__).resolve().parents[1]
SOURCES_DOC = REPO / "docs" / "sources.md"


def sections() -> dict[str, str]:
    out: dict[str, str] = {}
    current = ""
    for line in SOURCES_DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^## `([a-z0-9-]+)`", line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current:
            out[current] += line + "\n"
    return out


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_adapter_kind_and_option_is_documented_with_a_valid_example(kind: str):
    section = sections().get(kind)
    assert section is not None, f"docs/sources.md has no section for {kind}"
    for name in registry.get(kind).Options.model_fields:
        assert f"`{name}`" in section, f"option {name} of {kind} is not documented"
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    assert blocks, f"no TOML example for {kind}"
    for block in blocks:
        cfg = validate_config(tomllib.loads(block))
        assert [s.kind for s in cfg.sources] == [kind]


def all_commands(group: click.Group, prefix: str = "watcher") -> list[str]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # lazily loaded groups too
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, full))
        else:
            out.append(full)
    return out


@pytest.mark.parametrize("command", all_commands(main))
def test_every_cli_command_is_in_the_readme(command: str):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docs = readme + "".join(p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md"))
    assert f"`{command}" in docs, f"{command} is not documented"


@pytest.mark.parametrize("section", [k for k in Config.model_fields if k != "path"])
def test_every_config_section_is_documented(section: str):
    text = (REPO / "README.md").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in (REPO / "docs").glob("*.md")
    )
    assert f"[{section}]" in text or f"[[{section}]]" in text, f"[{section}] is not documented"
