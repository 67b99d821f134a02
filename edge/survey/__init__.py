"""Survey products: what a dive saw, where (docs/survey.md).

- :mod:`uwstego.survey.geo`: local east/north metres <-> latitude/longitude (one formula for the
  synthetic dives and for the survey);
- :mod:`uwstego.survey.navigation`: the vehicle's track read from a bag's odometry or fix topic,
  and its position at any stamp;
- :mod:`uwstego.survey.table`: the per-frame table (position, percent cover per class, dominant
  class, novel share) as CSV and GeoJSON;
- :mod:`uwstego.survey.truth`: percent cover of the ground-truth labels per frame;
- :mod:`uwstego.survey.dive`: one replayed dive joined with its navigation;
- :mod:`uwstego.survey.campaign`: many dives on a Dask cluster, resumable.
"""
