"""ROS 2 node around the uwstego Segmenter (see README.md in the package folder)."""
