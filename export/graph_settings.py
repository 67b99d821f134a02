"""Export's half of the bundle/graph binding: the settings that change the graph's output are
written into each graph file's ONNX ``metadata_props`` (so the graph's checksum covers them);
``uwstego.bundle.load_bundle`` refuses a ``bundle.json`` that disagrees (docs/bundle.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import onnx
from onnx import helper

from uwstego.bundle import GRAPH_FILES, BundleMeta
from uwstego.contract import GRAPH_SETTINGS_KEY


def record_settings(files: Mapping[str, bytes | Path], meta: BundleMeta
                    ) -> dict[str, bytes | Path]:
    """``files`` with ``meta.graph_settings()`` recorded in every serialised graph among them."""
    out = dict(files)
    settings = json.dumps(meta.graph_settings(), sort_keys=True)
    for name in GRAPH_FILES:
        content = out.get(name)
        if not isinstance(content, bytes):
            continue
        model = onnx.load_from_string(content)
        props = {p.key: p.value for p in model.metadata_props}
        helper.set_model_props(model, {**props, GRAPH_SETTINGS_KEY: settings})
        out[name] = model.SerializeToString()
    return out
