"""The results viewer: a self-contained HTML page per data set to watch a detector at work.

A user picks a run and a test video, plays it with the ground truth and the run's detections
drawn as lanes per class under it (events found and missed at a chosen tIoU), filters the
detections by score and class, seeks by clicking an event, compares two runs on the same
video, reads the runs' per-class AP and mAP-vs-tIoU curves, and, where those stages ran, the
segment classifiers' per-second predictions and the spatial localisers' heatmaps.

:mod:`pipeline.viewer.data` reads the stages' outputs; :mod:`pipeline.viewer.build` writes the
page (``page.html``, ``viewer.css`` and ``viewer.js`` beside it, inlined) and its media folder.
"""
