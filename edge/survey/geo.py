"""Local east/north metres <-> WGS84 latitude/longitude around an origin (docs/survey.md §2).

An equirectangular projection on the WGS84 equatorial radius: over the few kilometres of a dive
it differs from a proper local tangent plane by millimetres, which is below any USBL's error.
"""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_M = 6_378_137.0


def to_latlon(east_m: np.ndarray, north_m: np.ndarray,
              origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude in degrees of points ``east_m``/``north_m`` from ``origin``."""
    lat0, lon0 = origin
    lat = lat0 + np.degrees(np.asarray(north_m, dtype=np.float64) / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(np.asarray(east_m, dtype=np.float64)
                            / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat, lon


def to_local(lat: np.ndarray, lon: np.ndarray,
             origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """East and north metres from ``origin`` of points given in degrees (inverse of
    :func:`to_latlon`)."""
    lat0, lon0 = origin
    north = np.radians(np.asarray(lat, dtype=np.float64) - lat0) * EARTH_RADIUS_M
    east = (np.radians(np.asarray(lon, dtype=np.float64) - lon0)
            * EARTH_RADIUS_M * math.cos(math.radians(lat0)))
    return east, north


def check_origin(origin: tuple[float, float]) -> None:
    """ValueError naming the problem unless ``origin`` is a usable (latitude, longitude)."""
    lat, lon = origin
    if not (math.isfinite(lat) and math.isfinite(lon) and -85 <= lat <= 85 and -180 <= lon <= 180):
        raise ValueError(f"navigation origin {origin}: expected latitude in [-85, 85] and "
                         "longitude in [-180, 180] degrees")
