"""Importers of released benchmark features into the per-video feature store layout.

One module per release format, each with a CLI (``python -m pipeline.importers.<name> --help``):

- :mod:`pipeline.importers.unav100`: UnAV-100 I3D + VGGish, or ONE-PEACE, ``.npy`` per video.
- :mod:`pipeline.importers.ave`: AVE's HDF5 features, segment labels and split orders.
- :mod:`pipeline.importers.actionformer`: ActionFormer-format JSON + features (THUMOS14,
  EPIC-Kitchens-100), with audio extracted from the benchmark's videos on the released grid
  (:mod:`pipeline.importers.grid_audio`) when the videos are given.
- :mod:`pipeline.importers.perception_test`: Perception Test localisation (audio and video
  features of any width on configurable grids: MMV, TSP, VideoMAE V2, ...) and its challenge
  submission format.

Each writes ``{out}/{video_id}.zarr`` with the release's real timestamps, then ``index.json`` and
``stats.json`` (:mod:`pipeline.index`), so stage 2 reads them as it reads extracted features.
"""
