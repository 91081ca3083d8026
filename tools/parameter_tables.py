"""Rewrite the parameter tables of docs/ros.md from the node schemas (vos_ros/ros/parameters.py).

Each table sits between `<!-- NODE parameters -->` and `<!-- end -->`; test/ros/test_launch.py
checks that they match."""

import re
import sys
from pathlib import Path

from vos_ros.ros.parameters import PLAYER, PROMPT_UI, RECORDER, TRACKER, markdown_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ros.md"


def render(text: str) -> str:
    for node, schema in (("tracker", TRACKER), ("player", PLAYER), ("recorder", RECORDER), ("prompt_ui", PROMPT_UI)):
        text = re.sub(rf"(<!-- {node} parameters -->\n).*?(\n<!-- end -->)",
                      lambda m: m.group(1) + markdown_table(schema) + m.group(2), text, flags=re.S)
    return text


if __name__ == "__main__":
    DOCS.write_text(render(DOCS.read_text()))
    sys.exit(0)
