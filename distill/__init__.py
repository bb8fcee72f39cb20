"""roadseg distillation: student architectures, distillation losses and loop."""
