"""The embedded tiny setup: tiny Qwen-VL students, their warm-ups, the synthetic data and the toy world
of the "Does it learn?" experiment. Nothing in the trainers depends on this package; a 7B run never
imports it."""
