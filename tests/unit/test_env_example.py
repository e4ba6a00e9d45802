"""`.env.example` names every setting regua reads, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

import regua.settings

ROOT = Path(__file__).parent.parent.parent


def test_the_example_env_file_lists_every_setting_read() -> None:
    source = Path(regua.settings.__file__).read_text()
    read = {f"REGUA_{name}" for name in re.findall(r'\bget\("([A-Z_]+)"', source)}
    listed = set(re.findall(r"^# (REGUA_[A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))

    assert len(read) > 15
    assert listed == read
