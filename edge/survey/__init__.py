"""Survey products: what a dive saw, where (docs/survey.md).

- :mod:`edge.survey.geo`: local east/north metres <-> latitude/longitude (one formula for the
  synthetic dives and for the survey);
- :mod:`edge.survey.navigation`: the vehicle's track read from a bag's odometry or fix topic,
  and its position at any stamp;
- :mod:`edge.survey.table`: the per-frame table (position, percent cover per class, dominant
  class, novel share) as CSV and GeoJSON;
- :mod:`edge.survey.truth`: percent cover of the ground-truth labels per frame;
- :mod:`edge.survey.dive`: one replayed dive joined with its navigation;
- :mod:`edge.survey.campaign`: many dives on a Dask cluster, resumable.
"""
