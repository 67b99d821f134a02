"""Start the segmentation node with the vehicle parameters and the camera remapped.

    ros2 launch uwstego_ros segmentation.launch.py camera:=/camera bundle:=/opt/uwstego/bundle

With ``large_data:=true`` the node uses the Fast DDS large-data profile (needed for raw images
above ~512 KiB; the camera driver's process needs it too, see README.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("uwstego_ros")
    profile = os.path.join(share, "config", "fastdds_large_data.xml")
    camera = LaunchConfiguration("camera")
    large_data = IfCondition(LaunchConfiguration("large_data"))
    overrides = {
        "bundle": LaunchConfiguration("bundle"),
        "transport": LaunchConfiguration("transport"),
    }
    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera",
                              description="camera namespace holding image_raw and camera_info"),
        DeclareLaunchArgument("bundle", default_value="/opt/uwstego/bundle"),
        DeclareLaunchArgument("transport", default_value="compressed",
                              description="compressed or raw"),
        DeclareLaunchArgument("params", default_value=os.path.join(share, "config",
                                                                   "segmentation.yaml")),
        DeclareLaunchArgument("large_data", default_value="false"),
        # Humble (Fast DDS 2.x) reads the FASTRTPS_ name, Kilted and newer the FASTDDS_ one.
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile, condition=large_data),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile, condition=large_data),
        Node(
            package="uwstego_ros",
            executable="segmentation_node",
            name="uwstego_segmentation",
            output="screen",
            parameters=[LaunchConfiguration("params"), overrides],
            remappings=[
                ("image", [camera, "/image_raw"]),
                ("image/compressed", [camera, "/image_raw/compressed"]),
                ("camera_info", [camera, "/camera_info"]),
            ],
        ),
    ])
