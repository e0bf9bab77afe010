"""The README promises one test command; CI must run exactly that command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_readme_has_exactly_one_test_command_and_ci_runs_it():
    blocks = re.findall(r"```bash\n(.*?)```", readme_section("Tests"), flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert len(commands) == 1, commands
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0].strip() in ci_lines
