"""Custom classes found in long recordings: training mixtures, strong labels, a frame-level head.

``earmark train`` uses this sub-package to teach the detector the user's own classes *in
context*: :mod:`.strong_labels` reads recordings the user labelled with onsets and offsets,
:mod:`.mixtures` mixes the user's clips over the user's backgrounds at known times,
:mod:`.frame_head` is the small temporal network trained on those frames, :mod:`.detector`
cross-validates and fits it, and :mod:`.postprocess` chooses each class's detection threshold
for event F1 and its AudioSet evidence gate, and measures the expected quality. The core
detection path (:mod:`earmark.pipeline`) never imports this package;
:mod:`earmark.custom.model` applies a trained head at detection time.
"""
