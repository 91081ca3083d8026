#!/usr/bin/env bash
# Idempotent setup of the repository's .venv: Python packages, the ROS 2 message
# build, and vos_ros itself. Safe to run repeatedly; re-installs only what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V="$ROOT/.venv"
PY="${PYTHON:-python3}"
cd "$ROOT"

[ -x "$V/bin/python" ] || "$PY" -m venv "$V"

stamp="$V/.vos_ros_requirements.sha"
want="$(cat requirements.txt requirements-python.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python requirements into $V (first run downloads several GB: torch + CUDA libs)"
  "$V/bin/pip" install -q --upgrade pip
  "$V/bin/pip" install -q -r requirements.txt
  "$V/bin/pip" install -q --no-deps -r requirements-nodeps.txt
  echo "$want" > "$stamp"
fi

# The prompt page's browser test drives Debian's chromium; installed where apt can (root), else
# that test is skipped.
if ! command -v chromedriver > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing chromium and chromium-driver (apt)"
  mkdir -p build
  apt-get install -y -q --no-install-recommends chromium chromium-driver > build/apt.log 2>&1 \
    || (apt-get update -q > /dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium chromium-driver \
        >> build/apt.log 2>&1) || echo "[setup] chromium not installed (see build/apt.log): the browser test will be skipped"
fi

echo "[setup] installing vos_ros into $V"
"$V/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall .

# ROS 2 interfaces (msg/, srv/ -> vos_ros.msg, vos_ros.srv) and the lib/vos_ros
# executables for ros2 launch: CMake with the PyPI ROS build wheels, installed
# into the same prefix after pip (see CMakeLists.txt). The wheels' CMake exports
# name the wheel build machine's include paths; tools/patch_ros_wheel_cmake.py
# rewrites them (idempotent, so it also covers reinstalled message wheels).
ros_stamp="$V/.vos_ros_ros_build_requirements.sha"
ros_want="$(sha256sum requirements-ros-build.txt | cut -d' ' -f1)"
if [ "$(cat "$ros_stamp" 2>/dev/null)" != "$ros_want" ]; then
  echo "[setup] installing ROS message build requirements into $V"
  "$V/bin/pip" install -q -r requirements-ros-build.txt
  echo "$ros_want" > "$ros_stamp"
fi
"$V/bin/python" tools/patch_ros_wheel_cmake.py "$V"
# The venv's bin first on PATH and AMENT_PREFIX_PATH=<venv> let CMake find the
# wheels' packages and their typesupports.
cmake_install() {  # SOURCE_DIR NAME [CMAKE_ARGS...]: configure, build and install into the venv
  local src="$1" name="$2" log="build/$2_cmake.log"; shift 2
  mkdir -p build
  PATH="$V/bin:$PATH" AMENT_PREFIX_PATH="$V" cmake -S "$src" -B "build/${name}_cmake" \
    -DCMAKE_INSTALL_PREFIX="$V" -DCMAKE_PREFIX_PATH="$V" -DPython3_EXECUTABLE="$V/bin/python" \
    -DBUILD_TESTING=OFF "$@" > "$log" 2>&1 || { cat "$log"; exit 1; }
  PATH="$V/bin:$PATH" AMENT_PREFIX_PATH="$V" cmake --build "build/${name}_cmake" -j2 >> "$log" 2>&1 \
    || { tail -50 "$log"; exit 1; }
  cmake --install "build/${name}_cmake" >> "$log" 2>&1 || { tail -50 "$log"; exit 1; }
}
# vision_msgs comes with every ROS install but not from PyPI: the detection
# messages' published definitions (third_party/vision_msgs) where it is missing.
if ! (cd / && "$V/bin/python" -c "import vision_msgs.msg" 2>/dev/null); then
  echo "[setup] building vision_msgs (third_party/vision_msgs) into $V"
  cmake_install third_party/vision_msgs vision_msgs
fi
echo "[setup] building vos_ros.msg / vos_ros.srv into $V"
cmake_install . vos_ros -DVOS_ROS_PYTHON_INSTALLED_BY_PIP=ON
# Checked from / : from the repository root, the source vos_ros/ (no msg/) would shadow it.
(cd / && "$V/bin/python" -c "from vos_ros.msg import TrackedObjectArray; from vos_ros.srv import AddTargets; from vision_msgs.msg import Detection3DArray") \
  || { echo "[setup] vos_ros.msg, vos_ros.srv or vision_msgs.msg do not import after the build"; exit 1; }
