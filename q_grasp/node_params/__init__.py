"""The ROS nodes' parameters without ROS: each node's config dataclass (one documented field
per parameter), how fields map to ROS parameters, and the shipped parameter files generated
from them (``python -m q_grasp.node_params.files``). The nodes in ``q_grasp.nodes`` declare
these and glue them to topics."""
