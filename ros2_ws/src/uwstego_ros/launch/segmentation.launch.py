"""Start the segmentation node with the vehicle parameters and the camera remapped.

    ros2 launch uwstego_ros segmentation.launch.py camera:=/camera bundle:=/opt/uwstego/bundle

``ros2 launch uwstego_ros segmentation.launch.py --show-args`` lists every argument with its
description and allowed values. With ``large_data:=true`` the node uses the Fast DDS large-data
profile (needed for raw images above ~512 KiB; the camera driver's process needs it too, see
README.md). ``respawn:=true`` restarts the node when it exits, e.g. after a backend failure.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from uwstego.backends import BACKEND_NAMES, PRECISIONS
from uwstego.contract import DEFAULT_INPUT_QOS, NODE_NAME, QOS_PROFILES
from uwstego_ros.params import DEFAULTS, TRANSPORTS

BOOL = ("true", "false")
RESPAWN_DELAY_S = 2.0


def _flag(value: bool) -> str:
    return "true" if value else "false"


def generate_launch_description():
    share = get_package_share_directory("uwstego_ros")
    profile = os.path.join(share, "config", "fastdds_large_data.xml")
    camera = LaunchConfiguration("camera")
    large_data = IfCondition(LaunchConfiguration("large_data"))
    # Passed to the node over the parameters file; each has a launch argument below.
    overrides = {name: LaunchConfiguration(name) for name in (
        "bundle", "transport", "backend", "precision", "qos", "output_qos", "autostart")}
    arguments = [
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="camera namespace holding image_raw, "
                                          "image_raw/compressed and camera_info"),
        DeclareLaunchArgument("bundle", default_value="/opt/uwstego/bundle",
                              description="deploy bundle folder (model.onnx + bundle.json)"),
        DeclareLaunchArgument("transport", default_value=DEFAULTS.transport, choices=TRANSPORTS,
                              description="compressed: <camera>/image_raw/compressed; raw: "
                                          "<camera>/image_raw"),
        DeclareLaunchArgument("backend", default_value=DEFAULTS.backend,
                              choices=list(BACKEND_NAMES),
                              description="inference backend; auto tries TensorRT, then ONNX "
                                          "Runtime CUDA, then CPU"),
        DeclareLaunchArgument("precision", default_value=DEFAULTS.precision,
                              choices=list(PRECISIONS), description="TensorRT engine precision"),
        DeclareLaunchArgument("qos", default_value=DEFAULT_INPUT_QOS, choices=list(QOS_PROFILES),
                              description="input QoS: sensor_data (best effort) or reliable"),
        DeclareLaunchArgument("output_qos", default_value=DEFAULTS.output_qos,
                              choices=list(QOS_PROFILES),
                              description="QoS of the labels, overlay, confidence, coverage and "
                                          "camera_info outputs"),
        DeclareLaunchArgument("autostart", default_value=_flag(DEFAULTS.autostart),
                              choices=BOOL,
                              description="configure and activate at start; false: wait for a "
                                          "lifecycle manager"),
        DeclareLaunchArgument("params", default_value=os.path.join(share, "config",
                                                                   "segmentation.yaml"),
                              description="parameters file (the other node parameters)"),
        DeclareLaunchArgument("large_data", default_value="false", choices=BOOL,
                              description="load the Fast DDS large-data profile (raw images "
                                          "above ~512 KiB)"),
        DeclareLaunchArgument("respawn", default_value="false", choices=BOOL,
                              description=f"restart the node {RESPAWN_DELAY_S:.0f} s after it "
                                          "exits (it exits non-zero when the backend fails)"),
    ]
    respawn = LaunchConfiguration("respawn")

    def node(respawning: bool, condition) -> Node:
        # Humble's Node takes respawn as a plain bool, hence one action per value.
        return Node(
            package="uwstego_ros",
            executable="segmentation_node",
            name=NODE_NAME,
            output="screen",
            parameters=[LaunchConfiguration("params"), overrides],
            remappings=[
                ("image", [camera, "/image_raw"]),
                ("image/compressed", [camera, "/image_raw/compressed"]),
                ("camera_info", [camera, "/camera_info"]),
            ],
            respawn=respawning,
            respawn_delay=RESPAWN_DELAY_S if respawning else None,
            condition=condition,
        )

    return LaunchDescription([
        *arguments,
        # Humble (Fast DDS 2.x) reads the FASTRTPS_ name, Kilted and newer the FASTDDS_ one.
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile, condition=large_data),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile, condition=large_data),
        node(True, IfCondition(respawn)),
        node(False, UnlessCondition(respawn)),
    ])
