"""Point the ROS wheels' Python-generator CMake exports at this interpreter.

Every ``share/*/cmake/*__rosidl_generator_pyExport.cmake`` shipped in the ROS 2
PyPI wheels names the include directories of the machine the wheels were built
on (``/opt/python/cp3XX-.../include/python3.X`` and that machine's numpy). CMake
refuses to configure ``rosidl_generate_interfaces`` against imported targets
with non-existent include paths, so building vos_ros.msg needs them rewritten
to this venv's Python and numpy include directories.

Idempotent: paths that exist are left alone. Rerun after reinstalling any ROS
message wheel. Usage: <venv>/bin/python tools/patch_ros_wheel_cmake.py [PREFIX]
(PREFIX defaults to sys.prefix, i.e. the venv running this script).
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

INCLUDE_LINE = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES\s+")([^"]*)(")')


def replacement_for(path: str) -> str:
    if Path(path).exists():
        return path
    if path.rstrip("/").endswith(("numpy/_core/include", "numpy/core/include")):
        return numpy.get_include()
    if re.search(r"include/python3\.\d+t?/?$", path):
        return sysconfig.get_paths()["include"]
    return path


def patch_file(path: Path) -> bool:
    text = path.read_text()

    def fix(match: re.Match) -> str:
        dirs = [replacement_for(d) for d in match.group(2).split(";") if d]
        return match.group(1) + ";".join(dirs) + match.group(3)

    patched = INCLUDE_LINE.sub(fix, text)
    if patched != text:
        path.write_text(patched)
        return True
    return False


def main(argv: list[str]) -> int:
    prefix = Path(argv[0]) if argv else Path(sys.prefix)
    exports = sorted(prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake"))
    changed = [p for p in exports if patch_file(p)]
    print(f"[patch_ros_wheel_cmake] {len(changed)} of {len(exports)} export files rewritten under {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
