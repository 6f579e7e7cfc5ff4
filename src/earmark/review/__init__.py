"""Reviewing a detection run: correct its events and teach earmark from the corrections.

The wing (it imports the core and the custom-classes wing, never the reverse):

* :mod:`.run` reads a run folder written by ``earmark detect`` (its events, thresholds, audio);
* :mod:`.store` keeps the reviewer's decisions beside the run (``RUN_DIR/reviews/``): an
  append-only journal and the current state (:mod:`.items`) rebuilt from it, exported after
  every decision;
* :mod:`.exports` writes the corrections as DCASE TSV, Audacity labels and Raven selection
  tables, which ``earmark train --labelled`` / ``--from-reviews`` read back;
* :mod:`.queue` orders the detections by how much a decision would teach the model;
* :mod:`.media` cuts the audio snippet and draws the spectrogram of a detection;
* :mod:`.compare` lists what a new model changes on the run; :mod:`.retrain` runs
  ``earmark train --from-reviews`` for the page, then that comparison;
* :mod:`.server` and :mod:`.cli`: ``earmark review RUN_DIR`` serves the review page locally.
"""
