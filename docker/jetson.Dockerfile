# vos_ros on a Jetson (JetPack 6, L4T r36, Ubuntu 22.04, aarch64): ROS 2 Humble from
# packages.ros.org, JetPack's CUDA and TensorRT from the base image, NVIDIA's torch for JetPack.
# No x86_64-only wheel is installed: no PyPI ROS wheels, no PyPI torch.
#   docker build -f docker/jetson.Dockerfile -t vos_ros:jetson \
#     --build-arg TORCH_WHEEL=<URL or path of NVIDIA's torch wheel for your JetPack> \
#     --build-arg TORCHVISION_WHEEL=<a torchvision wheel built against it> .
#   docker run --rm -it --runtime nvidia --net host --ipc host vos_ros:jetson \
#     ros2 launch vos_ros tracker.launch.py camera_topic:=/camera/color/image_raw player:=false
# Build the TensorRT engines once on the device (docs/install.md). What was and was not verified: docs/install.md.
ARG L4T_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
FROM ${L4T_IMAGE}
ARG TORCH_WHEEL
ARG TORCHVISION_WHEEL

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends curl gnupg lsb-release \
    && curl -sSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key -o /usr/share/keyrings/ros-archive-keyring.gpg \
    && echo "deb [arch=arm64 signed-by=/usr/share/keyrings/ros-archive-keyring.gpg] http://packages.ros.org/ros2/ubuntu jammy main" \
         > /etc/apt/sources.list.d/ros2.list \
    && apt-get update && apt-get install -y --no-install-recommends \
         ros-humble-ros-base ros-humble-vision-msgs ros-humble-visualization-msgs ros-humble-diagnostic-msgs \
         ros-humble-rosidl-default-generators python3-colcon-common-extensions python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*

# The venv sees the system site-packages: rclpy from /opt/ros/humble and JetPack's tensorrt.
COPY requirements-python.txt requirements-nodeps.txt /tmp/vos_ros/
RUN test -n "$TORCH_WHEEL" && test -n "$TORCHVISION_WHEEL" \
    && python3 -m venv --system-site-packages /opt/vos_ros/venv \
    && /opt/vos_ros/venv/bin/pip install --no-cache-dir "$TORCH_WHEEL" "$TORCHVISION_WHEEL" \
    && grep -vxE 'torch|torchvision' /tmp/vos_ros/requirements-python.txt > /tmp/vos_ros/req.txt \
    && /opt/vos_ros/venv/bin/pip install --no-cache-dir -r /tmp/vos_ros/req.txt "numpy<2" \
    && /opt/vos_ros/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/vos_ros/requirements-nodeps.txt

COPY . /ws/src/vos_ros
RUN . /opt/ros/humble/setup.sh && cd /ws \
    && colcon build --packages-select vos_ros \
         --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=/opt/vos_ros/venv/bin/python \
    && rm -rf build log

RUN printf '#!/bin/bash\nset -e\n. /opt/ros/humble/setup.bash\n. /ws/install/setup.bash\n. /opt/vos_ros/venv/bin/activate\nexec "$@"\n' \
      > /entrypoint.sh && chmod +x /entrypoint.sh
ENV VOS_ROS_CACHE=/var/cache/vos_ros
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "vos_ros", "tracker.launch.py"]
