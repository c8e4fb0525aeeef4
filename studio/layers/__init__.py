"""Numpy-only data for the studio's views (Sonic Visualiser's model -> layer -> view).

No Qt widgets, no pyqtgraph, no torch here: a layer turns a clip's arrays into what a
view draws, and the view only draws it.

- ``peaks``: the waveform's min/max peak pyramid (one column per device pixel, any zoom);
- ``feature_rows``: the heatmap's rows (which features, their order by score or by label,
  the colour scale) and their cached max pyramids;
- ``lanes``: probe-decoded classes and measurements as the attribute lanes' curves;
- ``clip``: what the timeline prepares once per clip (peaks, mass sums, colour levels).
"""
