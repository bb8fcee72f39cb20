"""Reproduction recipes: every stage a command of the project, each skipped
when its outputs exist and resumed from its checkpoint, so an interrupted
recipe continues where it stopped.

* :mod:`roadseg_lab.recipes.scratch`: teachers and students from scratch on CamVid val
* :mod:`roadseg_lab.recipes.pretrained`: ImageNet encoders, sequence-disjoint validation
* :mod:`roadseg_lab.recipes.stages`: running a stage (a logged subprocess)
"""
