"""Fusion of several models' predictions for one benchmark split (the ICCV-2023 ensemble-and-refine pipeline).

A recipe names sources (prediction stores), chains rounds of operators (key-frame selection, k-of-N voting,
IoU-gated fusion, propagation from a key frame) and writes the final output through the writers of ``predict``.
``propagate/`` holds the propagators behind one interface. ``tools/ensemble.py RECIPE.yaml`` is the CLI;
docs/ENSEMBLE.md the guide.
"""
