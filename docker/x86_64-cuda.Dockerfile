# vos_ros on a desktop with an NVIDIA GPU: ROS 2 Jazzy (Ubuntu 24.04) + PyPI torch (CUDA
# libraries included) + TensorRT from NVIDIA's PyPI wheels. Needs the NVIDIA container toolkit.
#   docker build -f docker/x86_64-cuda.Dockerfile -t vos_ros:cuda .
#   docker run --rm -it --gpus all --net host --ipc host vos_ros:cuda \
#     ros2 launch vos_ros tracker.launch.py camera_topic:=/camera/color/image_raw player:=false
# What was and was not verified: docs/install.md.
FROM ros:jazzy-ros-base

RUN apt-get update && apt-get install -y --no-install-recommends \
      python3-venv python3-pip python3-colcon-common-extensions \
      ros-jazzy-vision-msgs ros-jazzy-visualization-msgs ros-jazzy-diagnostic-msgs \
    && rm -rf /var/lib/apt/lists/*

# A venv over the system site-packages: rclpy and the messages come from /opt/ros, torch and the
# rest from PyPI. numpy < 2: the ROS message extensions are built against Ubuntu's numpy 1.x ABI.
COPY requirements-python.txt requirements-nodeps.txt /tmp/vos_ros/
RUN python3 -m venv --system-site-packages /opt/vos_ros/venv \
    && /opt/vos_ros/venv/bin/pip install --no-cache-dir -r /tmp/vos_ros/requirements-python.txt "numpy<2" tensorrt \
    && /opt/vos_ros/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/vos_ros/requirements-nodeps.txt

COPY . /ws/src/vos_ros
RUN . /opt/ros/jazzy/setup.sh && cd /ws \
    && colcon build --packages-select vos_ros \
         --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=/opt/vos_ros/venv/bin/python \
    && rm -rf build log

# Sourcing order: ROS, the workspace, then the venv (torch), for every command.
RUN printf '#!/bin/bash\nset -e\n. /opt/ros/jazzy/setup.bash\n. /ws/install/setup.bash\n. /opt/vos_ros/venv/bin/activate\nexec "$@"\n' \
      > /entrypoint.sh && chmod +x /entrypoint.sh
ENV VOS_ROS_CACHE=/var/cache/vos_ros
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "vos_ros", "tracker.launch.py"]
