# q_grasp without a ROS 2 install: a virtualenv with pinned wheels (ROS 2 Jazzy from PyPI).
#   make run        set everything up, then run the main job
#   make test       set everything up, then lint and run the test suite (CI runs this)
#   make test-ros2  colcon build + ros2 launch with the real Jazzy launch tooling, built once
#                   from ../shared/ros2_launch by tools/ros2_tooling.sh (CI runs this too)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

# The ros-wheels-bootstrapper wheel re-executes Python at start-up to set LD_LIBRARY_PATH for
# the ROS libraries. Setting the variable and its guard here saves that re-exec in every process.
ROS_LD = $(shell _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 $(BIN)/python -c \
	"import ros_wheels_bootstrapper as b; print(b.get_ros_paths())" 2>/dev/null)
ENV = PYTHONPATH="$(CURDIR)" LD_LIBRARY_PATH="$(ROS_LD)" _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 \
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} MPLBACKEND=Agg

.PHONY: setup run train test test-ros2 lint unit benchmarks clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Main job: grasp training over ROS 2 topics (sim_arm + policy + trainer, the nodes of
# `ros2 launch q_grasp sim_train.launch.py`: sim_arm and policy composed in this process, the
# trainer in a child process with its own interpreter, so that it has a core of its own),
# then greedy evaluation.
run: setup
	$(ENV) $(BIN)/python -m q_grasp.nodes.bringup --task grasp --trainer-process \
		--out runs/grasp_ros $(RUN_ARGS)

# Single-process training without ROS (the learning core), e.g. make train TASK=reacher
TASK ?= grasp
train: setup
	$(ENV) $(BIN)/python -m q_grasp train --task $(TASK) --seed 0 --out runs/$(TASK) $(RUN_ARGS)

lint: setup
	$(ENV) $(BIN)/ruff check .

unit: setup
	$(ENV) $(BIN)/python -m pytest -q -m "not ros2_tooling" test

test: lint unit

# The tests that use the real launch tooling (skipped, with the reason, without its sources).
test-ros2: setup
	$(ENV) $(BIN)/python -m pytest -q -m ros2_tooling test/test_ros2_tooling.py

benchmarks: setup
	$(ENV) $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
