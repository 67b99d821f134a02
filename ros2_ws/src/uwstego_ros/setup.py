from glob import glob

from setuptools import find_packages, setup

PACKAGE = "uwstego_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="uwstego maintainers",
    maintainer_email="uwstego@example.com",
    description="ROS 2 node around the uwstego Segmenter",
    license="MIT",
    entry_points={"console_scripts": [f"segmentation_node = {PACKAGE}.__main__:main"]},
)
