"""Segment-level audio-visual event localisation (the AVE task) with AV-BT and TACMA.

Source: Applied Sciences 12(24) 12622 (2022). Steps (each a CLI, each callable from a test;
rules in ``pipeline/rules/segments.smk``):

1. :mod:`~pipeline.segments.clips`: decode every 1-second segment listed in segments.csv
   (frames and a VGGish log-mel spectrogram) into ``results/{dataset}/segments/clips.zarr``.
2. :mod:`~pipeline.segments.pretrain`: AV-BT, audio-visual Barlow Twins pre-training of the
   audio and visual encoders on the train split's videos (``avbt.pt`` + ``avbt.json``).
3. :mod:`~pipeline.segments.features`: the encoders' per-segment features of every split
   (``features.npz``); or, on AVE's released features, those vectors instead.
4. :mod:`~pipeline.segments.train`: a segment classifier, ``audio`` / ``visual`` / ``sum``
   (Table 2's MLP) or ``tacma`` (Table 3), selected on validation and scored on test
   (``{run}/metrics.json``).
5. :mod:`~pipeline.segments.table`: ``table.md`` and ``metrics.json`` side by side, with the
   paper's numbers beside ours on AVE.

Settings are frozen dataclasses in :mod:`~pipeline.segments.settings` (the paper's values are
their defaults), filled from the workflow config's ``segments`` block and passed as CLI flags.
"""
