"""Visual sound-source localisation on the feature stores' patch grids (stage 2, spatial).

- :mod:`~pipeline.spatial.data`: grids, audio and the video frame each grid shows; ground-truth
  masks from a synthetic data set's ``boxes.json``.
- :mod:`~pipeline.spatial.metrics`: cIoU (adaptive and half-max), AP50, AUC, mIoU, F-score,
  pointing accuracy.
- :mod:`~pipeline.spatial.train`, :mod:`~pipeline.spatial.evaluate`,
  :mod:`~pipeline.spatial.table`: the CLIs the workflow runs (``python -m pipeline.spatial.X``).
- :mod:`~pipeline.spatial.checkpoint`: a trained localiser on disk (written by training, read by
  evaluation).

The models (M2VSL, arXiv 2409.00486, and the similarity-map baseline) live in
:mod:`models.m2vsl`.
"""
