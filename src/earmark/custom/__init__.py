"""Custom classes, the wing where users train their own sound classes and detect them.

It imports the core and the core never imports it: the detection path (:mod:`earmark.pipeline`)
reaches it only through the ``earmark.classes`` entry point (:mod:`earmark.extensions`), which
pyproject.toml points at :data:`earmark.custom.provider.PROVIDER`. Its modules, by stage:

* **The data**: :mod:`.datasets` reads labelled clip collections (folders, CSV lists, ESC-50),
  :mod:`.strong_labels` recordings labelled with onsets and offsets, :mod:`.embeddings` computes
  the backbone's clip and framewise embeddings (cached), :mod:`.handcrafted` the hand-made
  features of the baseline, and :mod:`.data` holds a training run's options
  (:class:`~.data.TrainConfig`), its embedded clips and background recordings.
* **The clip head** (``earmark train``): :mod:`.training` runs a training and saves MODEL_DIR;
  :mod:`.crossval` cross-validates the head kinds of :mod:`.clip_head` (trained by the loop of
  :mod:`.fitting`); :mod:`.finetuning` fine-tunes the whole backbone; :mod:`.calibration`
  calibrates each class's detection threshold on out-of-fold clips.
* **The frame-level detector** (detection in long recordings): :mod:`.mixtures` mixes the
  clips over the backgrounds at known times, :mod:`.frame_head` is the small temporal network
  trained on those frames, :mod:`.detector` cross-validates and fits it, and
  :mod:`.postprocess` chooses each class's threshold for event F1 and its AudioSet evidence
  gate, and measures the expected quality.
* **Using a trained MODEL_DIR**: :mod:`.model` loads and checks it, :mod:`.provider` applies it
  in ``earmark detect --classes`` (and :func:`~.provider.detect_custom`), :mod:`.classify`
  gives the class probabilities of whole clips, and :mod:`.maps` draws embeddings in 2-D.
* **The command line**: :mod:`.cli` holds the ``embed``, ``train``, ``classify`` and ``map``
  sub-commands.
"""
