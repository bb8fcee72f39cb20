"""Reports: pages of ``docs/`` from the artifacts a recipe or a benchmark
wrote (run directories, sidecars, benchmark and soak JSON). Every number a
report prints is read from such a file.

* :mod:`roadseg_lab.reports.results`: ``docs/RESULTS.md`` from the from-scratch recipe
* :mod:`roadseg_lab.reports.pretrained`: the pretrained, sequence-disjoint section
* :mod:`roadseg_lab.reports.gpu_students`: the section of students trained on a GPU
* :mod:`roadseg_lab.reports.soak`: soak runs side by side
"""
