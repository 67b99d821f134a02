"""Bags: how the product meets the vehicle's recordings (rosbag2 MCAP/sqlite3, rosbag1).

One front door, :func:`open_bag`, for every reader that must survive damage (training, replay,
play): it says what the index promises, reads past damage and reports it per topic. Modules:

* :mod:`uwstego.bags.bag`: :func:`open_bag` and :class:`Bag`;
* :mod:`uwstego.bags.layout`: a bag's paths, storage files and the project's metadata keys;
* :mod:`uwstego.bags.salvage`: the storage files read past damage, one reader per storage
  (:mod:`uwstego.bags.salvage_mcap` over :mod:`uwstego.bags.mcap_records`,
  :mod:`uwstego.bags.salvage_sqlite`), sharing :mod:`uwstego.bags.findings`;
* :mod:`uwstego.bags.topics`: which topic is the camera (one rule everywhere);
* :mod:`uwstego.bags.writer`: :class:`BagWriter`, bags that are valid or absent, with real QoS;
* :mod:`uwstego.bags.reader`: strict reading through rosbags (exact checks of fresh bags);
* :mod:`uwstego.bags.messages`: stored messages, decoded frames and their counters.
"""

from uwstego.bags.bag import Bag, TopicLoss, open_bag
from uwstego.bags.layout import resolve_bag_path
from uwstego.bags.messages import (
    CAMERA_INFO_TYPE,
    CAMERA_TYPES,
    COMPRESSED_TYPE,
    FLOAT32_ARRAY_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    BagImage,
    RawMessage,
    ReadStats,
    decode_bag_image,
    describe_topics,
    typestore,
)
from uwstego.bags.reader import (
    BagInfo,
    bag_info,
    iter_bag_images,
    iter_bag_messages,
)
from uwstego.bags.topics import camera_info_topic, camera_topics, choose_camera_topic
from uwstego.bags.writer import BagWriter, qos_profile

__all__ = [
    "CAMERA_INFO_TYPE", "CAMERA_TYPES", "COMPRESSED_TYPE", "FLOAT32_ARRAY_TYPE", "IMAGE_TYPE",
    "IMAGE_TYPES", "Bag", "BagImage", "BagInfo", "BagWriter", "RawMessage", "ReadStats",
    "TopicLoss", "bag_info", "camera_info_topic", "camera_topics", "choose_camera_topic",
    "decode_bag_image", "describe_topics", "iter_bag_images", "iter_bag_messages", "open_bag",
    "qos_profile", "resolve_bag_path", "typestore",
]
