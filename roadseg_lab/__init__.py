"""roadseg's lab bench on the workstation: the recipes that reproduce the
published numbers, the benchmarks and checks that measure the runtime, and
the reports that turn their artifacts into pages of ``docs/``.

* :mod:`roadseg_lab.recipes`: ``reproduce-scratch`` and ``reproduce-pretrained``
  (CamVid, stage by stage, resumable), and their shared stage runner
* :mod:`roadseg_lab.reports`: ``docs/RESULTS.md`` and its measurement sections
  (from-scratch results, pretrained students, GPU-trained students, soak runs)
* :mod:`roadseg_lab.checks`: the soak benchmark and the aarch64 check
* :mod:`roadseg_lab.tables`: the one place Markdown tables and their numbers
  are formatted; :mod:`roadseg_lab.pages`: where pages live and how a section
  is put into one
* :mod:`roadseg_lab.cityscapes_lut`: regenerates the runtime's Cityscapes table
* :mod:`roadseg_lab.figures`: the pictures of ``docs/img``, in the project's
  palette, from the pages' numbers and from models given as arguments

Every command runs as ``python -m roadseg_lab COMMAND`` (:mod:`roadseg_lab.cli`);
the shell scripts in ``scripts/`` call them. Importing the package is cheap:
modules import NumPy, matplotlib, TensorFlow or the runtime where they need them.
"""
